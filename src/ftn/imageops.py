"""Image operations shared by the tasks and the metrics: MATLAB-compatible bicubic ``imresize``.

Used for SR down-sampling (``ftn.tasks.sr``) and NIQE's half-size scale (``ftn.eval.niqe``), which
needs the raw taps (:func:`resize_taps`) to form BasicSR's float32 sums itself.

The convention is MATLAB's ``imresize(img, scale)`` with the default ``'bicubic'`` method, which is
also what BasicSR's ``basicsr.utils.matlab_functions.imresize`` reproduces:

* **Kernel**: Keys' cubic convolution with ``a = -0.5``::

      k(x) = 1.5|x|^3 - 2.5|x|^2 + 1             for |x| <= 1
      k(x) = -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2     for 1 < |x| <= 2
      k(x) = 0                                   otherwise

* **Output size**: ``ceil(in * scale)`` on each axis (the same ``scale`` for height and width).
* **Coordinates**: output pixel ``x`` (1-based) samples the input at
  ``u = x / scale + 0.5 * (1 - 1 / scale)``, so pixel *areas* line up (the 0.5 of output space
  maps to the 0.5 of input space). The weights use the given ``scale``, not ``out / in``.
* **Antialiasing** (downscaling only, on by default as in MATLAB): the kernel is stretched to
  ``scale * k(scale * x)`` and its support widened to ``4 / scale`` input pixels, so a x1/4
  reduction low-pass filters over 16 input pixels instead of sampling 4.
* **Normalisation**: each output pixel's weights are divided by their sum (so a constant image
  stays constant, also next to the border).
* **Borders**: indices outside the image are mirrored *symmetrically* (the edge pixel repeated:
  ``... 2 1 | 1 2 3 ... n | n n-1 ...``), with MATLAB's modular rule, so any kernel width works even
  on images smaller than the kernel.
* **Order**: separable; height first, then width (MATLAB resizes the axis with the smaller scale
  first and, for equal scales, the first dimension first; BasicSR does the same).
* **No clipping or rounding** of the result: bicubic overshoots slightly outside [0, 1]; quantise
  yourself if you need 8-bit values (MATLAB only rounds when its input is ``uint8``).

Precision: numpy inputs are computed in float64 (as MATLAB does for ``double`` images); torch
inputs in their own floating dtype. BasicSR computes in float32, so the two agree to about 2e-7 (float32 rounding) on
[0, 1] images.
"""

from __future__ import annotations

import math
from typing import overload

import numpy as np
import torch

__all__ = ["imresize", "resize_taps", "resize_weights"]


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with ``a = -0.5`` (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    inner = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return inner + outer


def resize_taps(
    in_length: int, out_length: int, scale: float, *, antialiasing: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Per output pixel, the *unmirrored* 0-based input indices and the normalised weights it combines.

    Both ``(out_length, taps)``, taps being consecutive; the all-zero edge taps are dropped. Indices
    may fall outside ``[0, in_length)``: for callers that pad the input themselves;
    :func:`resize_weights` gives them mirrored into the image.
    """
    if in_length < 1 or out_length < 1:
        raise ValueError(f"lengths must be >= 1, got in={in_length}, out={out_length}")
    kernel_width = 4.0
    widen = antialiasing and scale < 1
    if widen:
        kernel_width /= scale
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    # one extra tap each side, as MATLAB does; any that end up all-zero are dropped below
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    distance = u[:, None] - indices
    weights = scale * _cubic(distance * scale) if widen else _cubic(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    keep = np.any(weights != 0, axis=0)
    return indices[:, keep].astype(np.int64) - 1, weights[:, keep]


def resize_weights(
    in_length: int, out_length: int, scale: float, *, antialiasing: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's ``contributions``: per output pixel, the input indices and weights it combines.

    Returns ``(indices, weights)``, both ``(out_length, taps)``: 0-based input indices, already
    mirrored into ``[0, in_length)``, and float64 weights whose rows sum to 1. ``out[i] =
    sum_k weights[i, k] * in[indices[i, k]]``.
    """
    idx, weights = resize_taps(in_length, out_length, scale, antialiasing=antialiasing)
    # MATLAB's symmetric padding: index into [1..n, n..1] modulo 2n
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    return mirror[np.mod(idx, 2 * in_length)], weights


def _resize_axis(x: torch.Tensor, dim: int, out_length: int, scale: float, antialiasing: bool) -> torch.Tensor:
    """Resize ``x`` along ``dim`` as a sum of ``taps`` gathered, weighted slices."""
    idx, w = resize_weights(x.shape[dim], out_length, scale, antialiasing=antialiasing)
    index = torch.from_numpy(idx).to(x.device)
    weight = torch.from_numpy(w).to(device=x.device, dtype=x.dtype)
    # broadcast the (out,) weight column along every axis after ``dim``
    shape = [1] * (x.ndim - dim % x.ndim)
    shape[0] = out_length
    out = None
    # a loop over the few taps keeps memory at one output-sized buffer (a single gather of all
    # taps would need taps x the output)
    for k in range(idx.shape[1]):
        term = x.index_select(dim, index[:, k]) * weight[:, k].reshape(shape)
        out = term if out is None else out + term
    assert out is not None
    return out


@overload
def imresize(img: np.ndarray, scale: float, *, antialiasing: bool = True) -> np.ndarray: ...
@overload
def imresize(img: torch.Tensor, scale: float, *, antialiasing: bool = True) -> torch.Tensor: ...


def imresize(img: np.ndarray | torch.Tensor, scale: float, *, antialiasing: bool = True) -> np.ndarray | torch.Tensor:
    """Bicubic resize by ``scale`` exactly as MATLAB's ``imresize(img, scale)`` (see the module doc).

    Args:
        img: a torch tensor ``(C, H, W)`` or ``(B, C, H, W)`` of a floating dtype (any device;
            differentiable), or a numpy array ``HW`` or ``HWC`` (computed and returned as float64).
        scale: the factor for both axes, > 0 (e.g. ``0.25`` for x4 SR down-sampling, ``2`` to
            enlarge); the output is ``ceil(H * scale) x ceil(W * scale)``.
        antialiasing: widen the kernel when ``scale < 1`` (MATLAB's default ``true``).

    Returns:
        The resized image, of the same kind and layout as ``img``, neither clipped nor rounded.
    """
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive number, got {scale}")
    if isinstance(img, np.ndarray):
        if img.ndim not in (2, 3):
            raise ValueError(f"expected an HW or HWC array, got shape {img.shape}")
        if not (np.issubdtype(img.dtype, np.floating) or np.issubdtype(img.dtype, np.integer)):
            raise TypeError(f"expected a real-valued array, got dtype {img.dtype}")
        hwc = img.astype(np.float64)[..., None] if img.ndim == 2 else img.astype(np.float64)
        t = torch.from_numpy(np.ascontiguousarray(hwc.transpose(2, 0, 1)))[None]
        out = imresize(t, scale, antialiasing=antialiasing)[0].numpy().transpose(1, 2, 0)
        return np.ascontiguousarray(out[..., 0] if img.ndim == 2 else out)
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor or a numpy array, got {type(img).__name__}")
    if img.ndim not in (3, 4):
        raise ValueError(f"expected a (C, H, W) or (B, C, H, W) tensor, got shape {tuple(img.shape)}")
    if not img.is_floating_point():
        raise TypeError(f"expected a floating-point tensor, got {img.dtype}")
    h, w = img.shape[-2:]
    if h < 1 or w < 1:
        raise ValueError(f"cannot resize an empty image of size {h}x{w}")
    out_h, out_w = math.ceil(h * scale), math.ceil(w * scale)
    out = _resize_axis(img, img.ndim - 2, out_h, scale, antialiasing)
    return _resize_axis(out, img.ndim - 1, out_w, scale, antialiasing)
