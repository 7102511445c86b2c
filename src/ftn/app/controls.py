"""What the app's controls mean, without any web code: level labels and per-pixel alpha maps.

Three ways to set alpha (:data:`MODES`):

* ``"whole image"``: the slider's alpha everywhere (a plain number).
* ``"painted area"``: pixels painted with the brush get the slider's alpha, unpainted pixels get 0
  (the model's first level). Painting nothing is refused, since it would silently give alpha 0.
* ``"gradient"``: a linear ramp from a start alpha at one edge to an end alpha at the opposite edge.

Maps are ``(1, H, W)`` float32 tensors in [0, 1] at the input image's size: batch of one, as
:func:`ftn.infer.apply.apply_model` takes them (it resizes a map to each layer's grid itself).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..levels import alpha_to_level, describe_levels, level_name

__all__ = [
    "DIRECTIONS",
    "MODES",
    "alpha_label",
    "build_alpha",
    "end_labels",
    "gradient_map",
    "paint_mask",
    "painted_map",
]

MODES: tuple[str, ...] = ("whole image", "painted area", "gradient")

#: Gradient directions: where the start alpha sits -> where the end alpha sits.
DIRECTIONS: tuple[str, ...] = ("left to right", "right to left", "top to bottom", "bottom to top")


def _check_unit(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must be a number in [0, 1], got {value:g}")
    return value


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    height, width = (int(s) for s in size)
    if height < 1 or width < 1:
        raise ValueError(f"image size must be at least 1 x 1 pixel, got {width} x {height}")
    return height, width


# -- labels -----------------------------------------------------------------------------------------


def end_labels(metadata: dict) -> tuple[str, str]:
    """Words for the slider's two ends, e.g. ``("sigma 20", "sigma 80")``.

    A style model that names its two styles (``task_options.styles``) is labelled with them, since
    "style 0 ... style 1" tells a user nothing.
    """
    styles = ((metadata or {}).get("task_options") or {}).get("styles")
    if isinstance(styles, list) and len(styles) == 2 and all(isinstance(s, str) for s in styles):
        return f"style {styles[0]}", f"style {styles[1]}"
    left, _, right = describe_levels(metadata).partition(" ... ")
    return left, right


def alpha_label(metadata: dict, alpha: float) -> str:
    """A slider position in words: ``"alpha 0.65 (about sigma 50)"``; the level is left out where
    the model cannot tell it (no calibration and not an end)."""
    alpha = float(alpha)
    text = f"alpha {alpha:.2f}"
    level = alpha_to_level(metadata, alpha)
    name = level_name(metadata)
    if level is not None and name:
        text += f" (about {name} {level:.3g})"
    return text


# -- alpha maps -------------------------------------------------------------------------------------


def gradient_map(size: Sequence[int], direction: str, start: float, end: float) -> Tensor:
    """A linear ramp of alpha over an image of ``size`` = (H, W): ``start`` on the first pixel
    column (or row) in ``direction``, ``end`` on the last; shape (1, H, W)."""
    height, width = _check_size(size)
    start, end = _check_unit(start, "gradient start alpha"), _check_unit(end, "gradient end alpha")
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown gradient direction {direction!r}; choose one of {', '.join(DIRECTIONS)}")
    horizontal = direction in ("left to right", "right to left")
    if direction in ("right to left", "bottom to top"):
        start, end = end, start  # the ramp is built left-to-right / top-to-bottom
    n = width if horizontal else height
    ramp = torch.linspace(start, end, n, dtype=torch.float64) if n > 1 else torch.tensor([start], dtype=torch.float64)
    ramp = ramp.to(torch.float32).clamp(0.0, 1.0)  # linspace may overshoot by an ulp
    grid = ramp.view(1, n).expand(height, width) if horizontal else ramp.view(n, 1).expand(height, width)
    return grid.contiguous()[None]


def paint_mask(layers: Sequence[np.ndarray] | None, size: Sequence[int]) -> np.ndarray:
    """Where the brush painted: a boolean (H, W) array at the image's ``size`` = (H, W).

    ``layers`` are the paint layers of the image editor, (h, w, 4) RGBA arrays; a pixel counts as
    painted where any layer has non-zero opacity (so the eraser, which clears opacity, unpaints).
    Layers of another size than the image (a scaled canvas) are resized by nearest neighbour, so
    a painted pixel stays all-or-nothing.
    """
    height, width = _check_size(size)
    mask = np.zeros((height, width), dtype=bool)
    for layer in layers or ():
        layer = np.asarray(layer)
        if layer.ndim != 3 or layer.shape[2] != 4:
            raise ValueError(f"a paint layer must be an (H, W, 4) RGBA array, got shape {layer.shape}")
        painted = layer[..., 3] > 0
        if painted.shape != (height, width):
            rows = (np.arange(height) * painted.shape[0] // height).clip(0, painted.shape[0] - 1)
            cols = (np.arange(width) * painted.shape[1] // width).clip(0, painted.shape[1] - 1)
            painted = painted[rows][:, cols]
        mask |= painted
    return mask


def painted_map(mask: np.ndarray, alpha: float) -> Tensor:
    """The alpha map of the ``"painted area"`` mode: ``alpha`` where ``mask`` is set, 0 elsewhere;
    shape (1, H, W)."""
    alpha = _check_unit(alpha, "paint alpha")
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"a paint mask must be (H, W), got shape {mask.shape}")
    return (torch.from_numpy(mask).to(torch.float32) * alpha)[None]


def build_alpha(
    mode: str,
    size: Sequence[int],
    alpha: float,
    *,
    layers: Sequence[np.ndarray] | None = None,
    direction: str = DIRECTIONS[0],
    start: float = 0.0,
    end: float = 1.0,
) -> float | Tensor:
    """The alpha the model runs at for the app's controls: a number in ``"whole image"`` mode, else
    a (1, H, W) map for an image of ``size`` = (H, W) (see the module docstring for the rules).

    Raises:
        ValueError: an unknown mode or direction, an alpha outside [0, 1], or ``"painted area"``
            with nothing painted.
    """
    alpha = _check_unit(alpha, "alpha")
    if mode == "whole image":
        return alpha
    if mode == "painted area":
        mask = paint_mask(layers, size)
        if not mask.any():
            raise ValueError("nothing is painted: paint the area to change with the brush, or choose 'whole image'")
        return painted_map(mask, alpha)
    if mode == "gradient":
        return gradient_map(size, direction, start, end)
    raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
