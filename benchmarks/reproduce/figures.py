"""Image helpers of the reproduce reports: centre crops, side-by-side strips, PNGs, matplotlib (loaded late)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


def centre_crop(t: torch.Tensor, size: int | None) -> torch.Tensor:
    """The centre ``size`` x ``size`` of an image tensor (offsets even, so chroma grids stay aligned); all when no size."""
    if not size:
        return t
    h, w = t.shape[-2:]
    ch, cw = min(size, h), min(size, w)
    top, left = ((h - ch) // 2) // 2 * 2, ((w - cw) // 2) // 2 * 2
    return t[..., top : top + ch, left : left + cw]


def hstack(images: Sequence[np.ndarray], gap: int = 2) -> np.ndarray:
    """HWC uint8 images side by side, white gaps between, shorter ones padded white at the bottom."""
    h = max(i.shape[0] for i in images)
    parts = []
    for k, im in enumerate(images):
        if im.shape[0] < h:
            im = np.pad(im, ((0, h - im.shape[0]), (0, 0), (0, 0)), constant_values=255)
        parts.append(im)
        if k < len(images) - 1:
            parts.append(np.full((h, gap, im.shape[2]), 255, np.uint8))
    return np.concatenate(parts, axis=1)


def save_png(array: np.ndarray, path: Path) -> None:
    """Write a uint8 array as a PNG, creating the folder."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def plt() -> Any:
    """matplotlib.pyplot on the Agg backend, imported only when a figure is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
