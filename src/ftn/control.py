"""The control alpha: one knob between level 1 (alpha = 0) and level 2 (alpha = 1).

alpha can be

* a number (global control, the common case),
* a per-sample tensor of shape (B,) (each image of a batch at its own level),
* a per-pixel map of shape (B, 1, H, W) or (1, 1, H, W) (the paper's pixel-adaptive extension, Eq. 3).

Every layer of a tunable model reads the same :class:`Control`; a per-pixel map is resized to each
layer's own output grid (layers after a stride-2 conv see a half-size map). Channel-last layers
(``nn.Linear``, ``nn.LayerNorm``) see a map only where their output is a (B, H, W, C) grid; token
sequences (B, N, C) take a number or a per-sample alpha, and a map there is refused with a clear error.

Values outside [0, 1] are extrapolation: the network was never trained there, so they are refused
unless the caller opts in with ``allow_extrapolation=True``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

AlphaLike = float | int | Tensor

__all__ = ["AlphaLike", "Control", "check_alpha", "resize_map"]


def check_alpha(alpha: AlphaLike, *, allow_extrapolation: bool = False) -> float | Tensor:
    """Validate an alpha and return it as a Python float or a float tensor of rank 1 or 4.

    Raises:
        TypeError: alpha is not a number or a tensor.
        ValueError: NaN/inf values, values outside [0, 1] without ``allow_extrapolation``, or a
            tensor of a rank that is neither a scalar, (B,) nor (B, 1, H, W).
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, Tensor)):
        raise TypeError(
            f"alpha must be a number, a (B,) tensor or a (B, 1, H, W) map, got {type(alpha).__name__}"
        )
    if isinstance(alpha, Tensor):
        if alpha.is_complex() or not (alpha.is_floating_point() or alpha.dtype in _INT_DTYPES):
            raise TypeError(f"alpha tensor must hold real numbers, got dtype {alpha.dtype}")
        value: float | Tensor
        if alpha.dim() == 0:
            value = float(alpha)
        elif alpha.dim() == 1:
            # keep float64 as float64 (a double-precision model must not see a rounded alpha)
            value = alpha if alpha.is_floating_point() else alpha.float()
        elif alpha.dim() == 4:
            if alpha.shape[1] != 1:
                raise ValueError(
                    f"an alpha map must have one channel, shape (B, 1, H, W); got {tuple(alpha.shape)}. "
                    "Pass a grey mask, or average the channels first."
                )
            value = alpha if alpha.is_floating_point() else alpha.float()
        else:
            raise ValueError(
                f"alpha tensor of shape {tuple(alpha.shape)} has rank {alpha.dim()}; use a scalar, "
                "a per-sample tensor (B,) or a per-pixel map (B, 1, H, W) "
                "(for an (H, W) mask use mask[None, None])."
            )
    else:
        value = float(alpha)

    if isinstance(value, float):
        finite, low, high = math.isfinite(value), value, value
    else:
        finite = bool(torch.isfinite(value).all())
        low, high = (float(value.min()), float(value.max())) if finite and value.numel() else (0.0, 0.0)
    if not finite:
        raise ValueError("alpha contains NaN or infinity; it must be a number in [0, 1]")
    if not allow_extrapolation and (low < 0.0 or high > 1.0):
        raise ValueError(
            f"alpha must lie in [0, 1] (got values in [{low:g}, {high:g}]); "
            "pass allow_extrapolation=True to go beyond the two trained levels"
        )
    return value


_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def resize_map(alpha_map: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize a (B, 1, H, W) map to ``size`` = (H', W') with bilinear filtering.

    Shrinking uses antialiasing so that a one-pixel-wide stroke still contributes to a coarse layer.
    A map already of that size is returned as it is.
    """
    if tuple(alpha_map.shape[-2:]) == tuple(size):
        return alpha_map
    shrinking = size[0] < alpha_map.shape[-2] or size[1] < alpha_map.shape[-1]
    return F.interpolate(alpha_map, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


class Control:
    """The alpha shared by every tunable layer of one model.

    Layers call :meth:`for_output` with the shape of their output and get either a float (global
    alpha) or a tensor that broadcasts against that output: (B, 1, 1, 1) for per-sample alpha,
    (B, 1, H, W) for a map resized to the layer's grid.
    """

    def __init__(self, alpha: AlphaLike = 0.0, *, allow_extrapolation: bool = False) -> None:
        self.allow_extrapolation = allow_extrapolation
        self._value: float | Tensor = 0.0
        self._map_cache: dict[tuple, Tensor] = {}
        self.set(alpha)

    # -- state ---------------------------------------------------------------------------------
    def set(self, alpha: AlphaLike) -> None:
        """Validate and store a new alpha (float, (B,) or (B, 1, H, W))."""
        self._value = check_alpha(alpha, allow_extrapolation=self.allow_extrapolation)
        self._map_cache = {}

    @property
    def value(self) -> float | Tensor:
        """The alpha as given (validated): a float or a float tensor."""
        return self._value

    @property
    def kind(self) -> str:
        """"global", "sample" or "map"."""
        if isinstance(self._value, float):
            return "global"
        return "sample" if self._value.dim() == 1 else "map"

    @property
    def is_global(self) -> bool:
        return isinstance(self._value, float)

    # -- per-layer view ------------------------------------------------------------------------
    def for_output(
        self,
        out: Tensor | torch.Size | tuple[int, ...],
        like: Tensor | None = None,
        *,
        channels_last: bool = False,
    ) -> float | Tensor:
        """alpha as seen by a layer whose output has shape ``out``.

        Returns a float for a global alpha, else a tensor broadcastable to the output, on the
        device and dtype of ``like`` (or of ``out`` when it is a tensor): (B, 1, ..., 1) for a
        per-sample alpha (any output rank), and for a map, (B, 1, H, W) resized to a channel-first
        output (B, C, H, W) or, with ``channels_last`` (``nn.Linear``, ``nn.LayerNorm``), (B, H, W, 1)
        for an output (B, H, W, C). Token outputs (B, N, C) have no grid and refuse maps.
        """
        if isinstance(self._value, float):
            return self._value
        shape = tuple(out.shape) if isinstance(out, Tensor) else tuple(out)
        ref = like if like is not None else (out if isinstance(out, Tensor) else None)
        batch = shape[0]
        value = self._value
        if value.shape[0] not in (1, batch):
            raise ValueError(
                f"alpha has {value.shape[0]} entries but the batch has {batch} images; "
                "give one alpha per image, or a single one"
            )
        if value.dim() == 1:
            result = value.view(-1, *([1] * (len(shape) - 1)))
        else:
            if len(shape) != 4:
                kind = "(B, H, W, C) channel-last" if channels_last else "(B, C, H, W)"
                raise ValueError(
                    f"a per-pixel alpha map needs {kind} feature maps, got a layer output of shape {shape}; "
                    "use a number or a per-sample alpha for this model"
                )
            grid = (shape[1], shape[2]) if channels_last else (shape[-2], shape[-1])
            # Resized once per grid, layout, device and dtype, then reused by every layer on that grid.
            key = (*grid, channels_last, ref.device if ref is not None else None, ref.dtype if ref is not None else None)
            result = self._map_cache.get(key)
            if result is None:
                result = resize_map(value, grid)
                if channels_last:
                    result = result.permute(0, 2, 3, 1)
                if ref is not None:
                    result = result.to(device=ref.device, dtype=ref.dtype)
                self._map_cache[key] = result
            return result
        if ref is not None and (result.device != ref.device or result.dtype != ref.dtype):
            result = result.to(device=ref.device, dtype=ref.dtype)
        return result
