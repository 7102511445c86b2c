"""JPEG compression artefacts: the deJPEG task (level = JPEG quality, lower = stronger)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch

from . import Task, check_images

_SUBSAMPLING = ("4:4:4", "4:2:2", "4:2:0")


class DeJPEG(Task):
    """Compress with Pillow's JPEG encoder (libjpeg) at quality ``int(round(q))`` and decode.

    * The clean image is first rounded to uint8 (as a file would be); the output is the decoded
      8-bit image divided by 255. Deterministic: no randomness, ``generator`` is ignored.
    * RGB (3 channels) is compressed as a colour JPEG with ``subsampling`` chroma subsampling
      (default ``"4:2:0"``, Pillow's and libjpeg's default); grey (1 channel) as a grey JPEG.
    * ``y_only=True`` compresses only the luma: RGB -> YCbCr (the JPEG / JFIF full-range BT.601
      matrix, in float from the uint8 values), Y rounded to uint8 and compressed as a grey JPEG,
      then recombined with the untouched Cb and Cr and rounded to uint8 RGB again. Chroma is
      therefore unchanged up to that last rounding (at most one 8-bit step per channel). This is
      the setting of works that train deJPEG on the Y channel only.
    """

    name = "dejpeg"
    level_name = "quality"
    default_levels = (40.0, 10.0)
    test_levels = (40.0, 30.0, 20.0, 10.0)

    def __init__(self, *, y_only: bool = False, subsampling: str = "4:2:0") -> None:
        if subsampling not in _SUBSAMPLING:
            raise ValueError(f"subsampling must be one of {_SUBSAMPLING}, got {subsampling!r}")
        self.y_only = bool(y_only)
        self.subsampling = subsampling

    @property
    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if self.y_only:
            opts["y_only"] = True
        if self.subsampling != "4:2:0":
            opts["subsampling"] = self.subsampling
        return opts

    def check_level(self, level: float) -> float:
        q = super().check_level(level)
        if not 1 <= round(q) <= 100:
            raise ValueError(f"JPEG quality must be in [1, 100], got {level!r}")
        return q

    def label(self, level: float) -> str:
        return f"quality {int(round(self.check_level(level)))}"

    def degrade(
        self, clean: torch.Tensor, level: float, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        quality = int(round(self.check_level(level)))
        x = check_images(clean)
        if x.shape[-3] not in (1, 3):
            raise ValueError(f"JPEG needs 1 (grey) or 3 (RGB) channels, got {x.shape[-3]}")
        flat = x.detach().reshape(-1, *x.shape[-3:]).to("cpu", torch.float32)
        u8 = (flat.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        out = np.stack([self._compress(img, quality) for img in u8])
        y = torch.from_numpy(out).permute(0, 3, 1, 2).to(torch.float32) / 255.0
        return y.reshape(x.shape).to(x.device)

    def _compress(self, img: np.ndarray, quality: int) -> np.ndarray:
        """One HWC uint8 image -> the decoded HWC uint8 JPEG."""
        if img.shape[2] == 1:
            return _jpeg(img[..., 0], quality, self.subsampling)[..., None]
        if not self.y_only:
            return _jpeg(img, quality, self.subsampling)
        rgb = img.astype(np.float64)
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        luma = 0.299 * r + 0.587 * g + 0.114 * b
        cb = -0.168736 * r - 0.331264 * g + 0.5 * b  # Cb - 128
        cr = 0.5 * r - 0.418688 * g - 0.081312 * b  # Cr - 128
        y8 = np.clip(np.round(luma), 0, 255).astype(np.uint8)
        yd = _jpeg(y8, quality, self.subsampling).astype(np.float64)
        out = np.stack(
            [yd + 1.402 * cr, yd - 0.344136 * cb - 0.714136 * cr, yd + 1.772 * cb], axis=-1
        )
        return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _jpeg(img: np.ndarray, quality: int, subsampling: str) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="JPEG", quality=quality, subsampling=subsampling)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("L" if img.ndim == 2 else "RGB"))
