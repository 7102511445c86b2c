"""Additive white Gaussian noise: the denoising task (level = sigma on the 0-255 scale)."""

from __future__ import annotations

from typing import Any

import torch

from . import Task, check_images


class Denoise(Task):
    """``y = x + sigma / 255 * n`` with ``n ~ N(0, 1)`` i.i.d. per pixel and channel.

    The result is **not clipped** to [0, 1] by default, as in AdaFM (and DnCNN, CBSD68 benchmarks):
    the network sees the true noise distribution. ``clip=True`` clips to [0, 1], and
    ``quantize=True`` also rounds to 8 bits: both together are what a noisy photo saved to a file
    holds, the "photo-true" setting the shipped models train on. It matters: on CBSD68, 6% of the
    noisy values fall outside [0, 1] at sigma 25, 13% at sigma 50 and 21% at sigma 75. The noise is
    drawn from ``generator`` (on its device, then moved), in one ``torch.randn`` call of the input's
    shape, so a fixed generator state gives the same noise on any device.
    """

    name = "denoise"
    level_name = "sigma"
    default_levels = (20.0, 80.0)
    test_levels = (20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0)

    def __init__(self, *, clip: bool = False, quantize: bool = False) -> None:
        if quantize and not clip:
            raise ValueError("quantize=True needs clip=True (an 8-bit file holds values in [0, 255] only)")
        self.clip = bool(clip)
        self.quantize = bool(quantize)

    @property
    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if self.clip:
            opts["clip"] = True
        if self.quantize:
            opts["quantize"] = True
        return opts

    def check_level(self, level: float) -> float:
        sigma = super().check_level(level)
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {level!r}")
        return sigma

    def degrade(
        self, clean: torch.Tensor, level: float, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        sigma = self.check_level(level)
        x = check_images(clean).to(torch.float32)
        device = generator.device if generator is not None else x.device
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float32, device=device)
        y = x + (sigma / 255.0) * noise.to(x.device)
        if self.clip:
            y = y.clamp_(0, 1)
        if self.quantize:
            y = y.mul_(255).round_().div_(255)
        return y
