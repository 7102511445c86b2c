"""Photos as files hold them: noise, then 8 bits, then JPEG: the ``restore`` task (two axes).

The level of this task is a *setting* of two axes, ``{"sigma": s, "quality": q}`` (issue [4/6]):

1. noise of standard deviation ``sigma`` (0-255 scale; 0 = none): Gaussian, or Poisson-Gaussian
   with ``poisson=p`` > 0, the signal-dependent noise a camera sensor makes, whose variance grows
   with the pixel value: ``var(x) = (sigma / 255)^2 * ((1 - p) + 2 p x)``, so at mid-grey (x = 0.5)
   the standard deviation is ``sigma`` whatever ``p``, darker pixels have less noise and brighter more;
2. clipped to [0, 1] and rounded to 8 bits, as a file holds it;
3. JPEG at ``quality`` (Pillow's libjpeg, 4:2:0 for colour, as :class:`~ftn.tasks.dejpeg.DeJPEG`);
   ``quality`` left out (or ``None``) = no JPEG.

A multi-axis model trained on it (:mod:`ftn.methods.axes`) has the axes ``sigma`` and ``quality``;
one-axis tasks (:mod:`ftn.tasks.denoise`, :mod:`ftn.tasks.dejpeg`) keep a number as their level.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from . import Task, check_images
from .dejpeg import DeJPEG

AXES = ("sigma", "quality")


class Restore(Task):
    """Noise (Gaussian or Poisson-Gaussian), clipping and 8 bits, then JPEG, at ``{"sigma", "quality"}``."""

    name = "restore"
    level_name = "setting"
    #: The corners of the shipped grid: clean-ish (no noise, quality 90) and the strongest (50, 10).
    default_levels = ({"sigma": 0.0, "quality": 90.0}, {"sigma": 50.0, "quality": 10.0})  # type: ignore[assignment]
    test_levels = tuple({"sigma": s, "quality": q} for s in (0.0, 15.0, 30.0, 50.0) for q in (90.0, 50.0, 30.0, 10.0))  # type: ignore[assignment]

    def __init__(self, *, poisson: float = 0.0) -> None:
        p = float(poisson)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"poisson (the signal-dependent share of the noise) must be in [0, 1], got {poisson!r}")
        self.poisson = p

    @property
    def options(self) -> dict[str, Any]:
        return {"poisson": self.poisson} if self.poisson else {}

    def check_level(self, level: Mapping[str, float | None]) -> dict[str, float | None]:  # type: ignore[override]
        """``{"sigma": s, "quality": q}`` checked: sigma >= 0 (left out = 0), quality in [1, 100] or
        left out / ``None`` (no JPEG)."""
        if not isinstance(level, Mapping):
            raise ValueError(f"the restore task's level is a setting {{'sigma': s, 'quality': q}}, got {level!r:.80}")
        unknown = sorted(set(map(str, level)) - set(AXES))
        if unknown:
            raise ValueError(f"the restore task's axes are sigma and quality, got {', '.join(unknown)[:80]}")
        sigma = level.get("sigma", 0.0)
        quality = level.get("quality")
        try:
            sigma = float(sigma if sigma is not None else 0.0)
            quality = None if quality is None else float(quality)
        except (TypeError, ValueError):
            raise ValueError(f"sigma and quality must be numbers, got {dict(level)!r:.80}") from None
        if not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f"sigma must be finite and >= 0, got {sigma!r}")
        if quality is not None and not (math.isfinite(quality) and 1 <= round(quality) <= 100):
            raise ValueError(f"JPEG quality must be in [1, 100] (or left out: no JPEG), got {quality!r}")
        return {"sigma": sigma, "quality": quality}

    def label(self, level: Mapping[str, float | None]) -> str:  # type: ignore[override]
        setting = self.check_level(level)
        jpeg = "no JPEG" if setting["quality"] is None else f"quality {int(round(setting['quality']))}"
        return f"sigma {setting['sigma']:g}, {jpeg}"

    def degrade(self, clean: torch.Tensor, level: Mapping[str, float | None],  # type: ignore[override]
                generator: torch.Generator | None = None) -> torch.Tensor:
        setting = self.check_level(level)
        x = check_images(clean).to(torch.float32)
        sigma = setting["sigma"] / 255.0
        y = x.clone()
        if sigma > 0:
            device = generator.device if generator is not None else x.device
            noise = torch.randn(x.shape, generator=generator, dtype=torch.float32, device=device).to(x.device)
            # the standard deviation per pixel: sigma at mid-grey, growing with the value for p > 0
            std = sigma * ((1.0 - self.poisson) + 2.0 * self.poisson * x.clamp(0, 1)).sqrt()
            y = y + std * noise
        y = y.clamp_(0, 1).mul_(255).round_().div_(255)  # what an 8-bit file holds
        if setting["quality"] is not None:
            y = DeJPEG().degrade(y, setting["quality"])
        return y
