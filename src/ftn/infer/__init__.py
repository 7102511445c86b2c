"""Inference: applying a tunable model to images at a level, and estimating an image's level.

* :func:`apply_model` -- one image at an alpha (a number or a per-pixel map).
* :func:`level_to_alpha`, :func:`alpha_to_level`, :func:`describe_levels` -- real levels
  ("sigma 50") to and from alpha through a model's calibration.
* :func:`estimate_noise_sigma`, :func:`estimate_jpeg_quality` -- blind estimates for ``--auto``.
* :mod:`ftn.infer.cli` -- the ``ftn run`` command.

Not imported by ``import ftn``.
"""

from .apply import alpha_to_level, apply_model, describe_levels, level_name, level_to_alpha, model_channels
from .estimate import estimate_jpeg_quality, estimate_noise_sigma

__all__ = [
    "alpha_to_level",
    "apply_model",
    "describe_levels",
    "estimate_jpeg_quality",
    "estimate_noise_sigma",
    "level_name",
    "level_to_alpha",
    "model_channels",
]
