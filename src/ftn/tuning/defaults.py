"""Defaults of ``ftn tune``, sized for a CPU (choosing them from free memory is a later step).

The learning rate: a constant 1e-4 for Adam, why in :mod:`ftn.tuning.loop`.
"""

DEFAULT_LR = 1e-4
DEFAULT_BATCH = 8
DEFAULT_PATCH = 64
DEFAULT_ITERS = 1000
