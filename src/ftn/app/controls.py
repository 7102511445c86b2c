"""What the app's controls mean, without any web code: level labels and per-pixel alpha maps.

Three ways to set alpha (:data:`MODES`):

* ``"whole image"``: the slider's alpha everywhere (a plain number).
* ``"painted area"``: pixels painted with the brush get the slider's alpha, unpainted pixels get 0
  (the model's first level). Painting nothing is refused, since it would silently give alpha 0.
* ``"gradient"``: a linear ramp from a start alpha at one edge to an end alpha at the opposite edge.

Maps are ``(1, H, W)`` float32 tensors in [0, 1] at the input image's size: batch of one, as
:func:`ftn.infer.apply.apply_model` takes them (it resizes a map to each layer's grid itself).

A model with several axes or anchors (:class:`ftn.methods.axes.AxesModel`) has a slider per axis, axis
d running over [0, K_d] (anchor k at k), and a paint layer per axis (:func:`axes_setting`): the same
three modes, axis by axis. Its sliders are read as ``ftn run --alpha`` reads its values
(:func:`ftn.levels.parse_setting`), so the app and the command say a setting in the same words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..levels import Axis, Levels, alpha_to_level, describe_levels, level_name, parse_setting

__all__ = [
    "DIRECTIONS",
    "MAX_AXES",
    "MODES",
    "alpha_label",
    "axes_setting",
    "axis_label",
    "axis_ticks",
    "build_alpha",
    "end_labels",
    "gradient_map",
    "paint_mask",
    "painted_map",
]

MODES: tuple[str, ...] = ("whole image", "painted area", "gradient")

#: Gradient directions: where the start alpha sits -> where the end alpha sits.
DIRECTIONS: tuple[str, ...] = ("left to right", "right to left", "top to bottom", "bottom to top")

#: Axes the page has sliders and paint layers for (a fixed set, shown or hidden per model).
MAX_AXES = 4


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


def axis_ticks(axis: Axis | None, segments: int) -> list[str]:
    """Words for an axis slider's whole-number stops 0 ... K: each anchor's level (``"5"``, ``"15"``)
    where the model names them, else ``"alpha k"``."""
    if axis is not None and axis.anchors is not None and len(axis.anchors) == segments + 1:
        return [f"{v:g}" for v in axis.anchors]
    return [f"alpha {k}" for k in range(segments + 1)]


def axis_label(name: str, axis: Axis | None, segments: int) -> str:
    """An axis slider's label: its name and anchors, e.g. ``"sigma: 5 · 15 · 30 · 50 · 75"``."""
    return f"{name}: {' · '.join(axis_ticks(axis, segments))}"


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


def axes_setting(
    axes: Sequence[tuple[str, int]],
    levels: Levels | None,
    alphas: Sequence[float],
    mode: str,
    size: Sequence[int],
    *,
    layers: Sequence[Sequence[np.ndarray] | None] = (),
    gradient_axis: str | None = None,
    direction: str = DIRECTIONS[0],
    start: float = 0.0,
    end: float = 1.0,
) -> tuple[dict[str, float | Tensor], str]:
    """The setting of a multi-axis model for the app's controls, and it in words.

    Args:
        axes: the model's axes in order, as ``(name, K)``.
        levels: their anchor levels and calibrations (:attr:`AxesModel.levels`), or None.
        alphas: the sliders, one per axis, axis d in [0, K_d].
        mode: one of :data:`MODES`, applied axis by axis: ``"whole image"``, every axis its slider;
            ``"painted area"``, an axis whose paint layer (``layers[d]``) holds paint gets its slider
            where painted and 0 elsewhere, an unpainted axis its slider everywhere; ``"gradient"``,
            ``gradient_axis`` ramps from ``start`` to ``end`` (shares of its range [0, K]), the others
            take their sliders.
        size: the image's (H, W); maps are (1, H, W).

    Raises:
        ValueError: (one line) a slider outside its axis's range or not a number, an unknown mode,
            axis or direction, or ``"painted area"`` with nothing painted on any axis.
    """
    names = [name for name, _ in axes]
    if len(alphas) < len(names):
        raise ValueError(f"this model has {len(names)} axes ({', '.join(names)}), got {len(alphas)} values")
    # The sliders go through the command line's --alpha reader: its range checks and its words.
    text = ",".join(f"{name}={float(a)!r}" for name, a in zip(names, alphas, strict=False))
    values = parse_setting(list(axes), levels, alpha=text)
    setting: dict[str, float | Tensor] = {name: float(values[name].alpha) for name in names}
    words = [values[name].words for name in names]
    if mode == "painted area":
        height, width = _check_size(size)
        painted = 0
        for d, name in enumerate(names):
            mask = paint_mask(layers[d] if d < len(layers) else None, (height, width))
            if mask.any():
                painted += 1
                setting[name] = torch.from_numpy(mask).to(torch.float32)[None] * setting[name]
                words[d] += f" on the painted {float(mask.mean()) * 100:.1f}% of the pixels, alpha 0 elsewhere"
        if not painted:
            raise ValueError("nothing is painted: paint the area to change for at least one axis, or choose 'whole image'")
    elif mode == "gradient":
        name = gradient_axis or names[0]
        if name not in names:
            raise ValueError(f"this model has no axis {name!r} for the gradient; its axes are {', '.join(names)}")
        segments = dict(axes)[name]
        setting[name] = gradient_map(size, direction, start, end) * segments
        words[names.index(name)] = f"{name} gradient {direction}, alpha {start * segments:.4g} ... {end * segments:.4g}"
    elif mode != "whole image":
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return setting, "; ".join(words)
