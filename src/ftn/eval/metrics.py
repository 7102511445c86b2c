"""PSNR and SSIM with BasicSR's conventions (numpy only).

* Inputs are torch tensors ``(C, H, W)`` / ``(1, C, H, W)`` float in [0, 1], or numpy ``HWC``
  (or ``HW``) arrays on the 0-255 scale (normally uint8). Both are quantised to 8-bit values first
  (tensors: clamp, x 255, round, as BasicSR's ``tensor2img``), so a metric sees exactly what a
  saved PNG would hold.
* ``crop_border`` pixels are removed from every side before anything else.
* ``y_channel=True`` measures the BT.601 luma ``Y`` in [16, 235] of RGB images (BasicSR's
  ``bgr2ycbcr(..., y_only=True)`` applied in RGB order); one-channel images are used as they are.
* PSNR: ``10 log10(255^2 / MSE)`` over all pixels and channels; ``inf`` for identical images.
* SSIM: Wang et al. with an 11 x 11 Gaussian window (sigma 1.5), ``K1 = 0.01``, ``K2 = 0.03``,
  ``L = 255``, population (not sample) covariances, the map taken over the *valid* region only
  (the 5-pixel rim where the window leaves the image is dropped), averaged, then averaged over
  channels.

Report the convention with every number (e.g. "PSNR RGB, crop 0").
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["to_uint8", "rgb_to_y", "psnr", "ssim"]

_Image = torch.Tensor | np.ndarray


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` or ``(1, C, H, W)`` float [0, 1] -> ``HWC`` float64 array of integers 0-255.

    Clamped to [0, 1], multiplied by 255 and rounded (half to even), like BasicSR's ``tensor2img``
    (which rounds the same way) but keeping RGB order and float64 values.
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(image).__name__}")
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {image.shape[0]}")
        image = image[0]
    if image.ndim != 3:
        raise ValueError(f"expected (C, H, W) or (1, C, H, W), got shape {tuple(image.shape)}")
    x = image.detach().to("cpu", torch.float64).clamp(0, 1).numpy().transpose(1, 2, 0)
    return np.round(x * 255.0)


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """``HWC`` RGB on the 0-255 scale -> ``HW`` luma in [16, 235] (ITU-R BT.601, studio swing).

    ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``: BasicSR's ``bgr2ycbcr`` with
    ``y_only=True``, written for RGB order (and in float64 where BasicSR uses float32; the
    difference is below 1e-4 in Y).
    """
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HWC RGB image, got shape {img.shape}")
    return img @ np.array([65.481, 128.553, 24.966]) / 255.0 + 16.0


def _as_hwc(x: _Image) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return to_uint8(x)
    if isinstance(x, np.ndarray):
        a = x.astype(np.float64)
        if a.ndim == 2:
            a = a[..., None]
        if a.ndim != 3:
            raise ValueError(f"expected an HWC (or HW) array, got shape {x.shape}")
        return np.clip(np.round(a), 0, 255)
    raise TypeError(f"expected a torch.Tensor or a numpy array, got {type(x).__name__}")


def _prepare(x: _Image, y: _Image, crop_border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_hwc(x), _as_hwc(y)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} (HWC) vs {b.shape}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border:
        full = a.shape
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
        if a.size == 0:
            raise ValueError(f"crop_border={crop_border} leaves nothing of an HWC {full} image")
    if y_channel and a.shape[2] == 3:
        a, b = rgb_to_y(a)[..., None], rgb_to_y(b)[..., None]
    return a, b


def psnr(x: _Image, y: _Image, *, crop_border: int = 0, y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB (peak 255) over all channels; ``inf`` if identical."""
    a, b = _prepare(x, y, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0:
        return float("inf")
    return 10.0 * math.log10(255.0**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    k = np.exp(-(r**2) / (2 * sigma**2))
    return k / k.sum()


def _filter_valid(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable correlation of ``(H, W, C)`` with ``k`` on both axes, valid region only."""
    n = len(k)
    h, w = img.shape[:2]
    rows = sum(k[i] * img[i : h - n + 1 + i] for i in range(n))
    return sum(k[j] * rows[:, j : w - n + 1 + j] for j in range(n))


def ssim(x: _Image, y: _Image, *, crop_border: int = 0, y_channel: bool = False) -> float:
    """Structural similarity (BasicSR's ``calculate_ssim``), mean over the valid map and channels."""
    a, b = _prepare(x, y, crop_border, y_channel)
    k = _gaussian_window()
    if min(a.shape[:2]) < len(k):
        raise ValueError(f"SSIM needs images of at least {len(k)}x{len(k)}, got {a.shape[:2]}")
    c1 = (0.01 * 255) ** 2
    c2 = (0.03 * 255) ** 2
    mu_a = _filter_valid(a, k)
    mu_b = _filter_valid(b, k)
    var_a = _filter_valid(a * a, k) - mu_a**2
    var_b = _filter_valid(b * b, k) - mu_b**2
    cov = _filter_valid(a * b, k) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return float(ssim_map.mean(axis=(0, 1)).mean())
