"""Inference: applying a tunable model to images, and estimating an image's level.

* :func:`apply_model` -- one image at an alpha (a number or a per-pixel map).
* :func:`estimate_noise_sigma`, :func:`estimate_noise_map`, :func:`estimate_jpeg_noise_sigma`,
  :func:`estimate_jpeg_quality` -- blind estimates for ``--auto`` (the noise map for ``--auto-map``).
* :mod:`ftn.infer.cli` -- the ``ftn run`` command.

Real levels ("sigma 50") to and from alpha: :mod:`ftn.levels`. Not imported by ``import ftn``.
"""

from .apply import apply_model
from .estimate import estimate_jpeg_noise_sigma, estimate_jpeg_quality, estimate_noise_map, estimate_noise_sigma

__all__ = [
    "apply_model",
    "estimate_jpeg_noise_sigma",
    "estimate_jpeg_quality",
    "estimate_noise_map",
    "estimate_noise_sigma",
]
