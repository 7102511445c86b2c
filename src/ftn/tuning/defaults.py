"""Defaults of ``ftn tune``.

The learning rate: a constant 1e-4 for Adam, why in :mod:`ftn.tuning.loop`. Batch and patch size
are chosen from free memory when not given (:mod:`ftn.tuning.sizes`); ``DEFAULT_BATCH`` and
``DEFAULT_PATCH`` serve only where the free memory cannot be read. ``DEFAULT_HOLD_OUT``: images of
``--data`` kept out of training for the level -> alpha calibration (:mod:`ftn.tuning.calibrate`).
"""

DEFAULT_LR = 1e-4
DEFAULT_BATCH = 8
DEFAULT_PATCH = 64
DEFAULT_ITERS = 1000
DEFAULT_HOLD_OUT = 4
