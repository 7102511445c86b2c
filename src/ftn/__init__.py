"""ftn: continuous-level image processing with Filter Transition Networks and their baselines.

Turn a network trained for one level (noise sigma 20, JPEG quality 40, a pixel loss, style A) into one
that serves every level up to a second one, chosen at run time by alpha in [0, 1]::

    import ftn
    net = ftn.build_arch("adafm_net")          # train it at level 1
    model = ftn.attach(net, "ftn", groups=16)  # stage 2 trains model.tuner_parameters() at alpha=1
    with model.alpha(0.5):
        y = model(x)
    plain = model.export(0.5)                  # a plain AdaFM-Net with the alpha=0.5 weights

This module stays light: it imports torch and the library's core only.
"""

from .archs import ARCHS, build_arch
from .control import Control, check_alpha
from .io import load, load_base, save
from .levels import Levels
from .methods import METHODS, Capabilities, ExportNotSupported, TunableModel, attach

__version__ = "0.1.0"

__all__ = [
    "ARCHS",
    "METHODS",
    "Capabilities",
    "Control",
    "ExportNotSupported",
    "Levels",
    "TunableModel",
    "attach",
    "build_arch",
    "check_alpha",
    "load",
    "load_base",
    "save",
    "__version__",
]


def __getattr__(name: str) -> object:
    # ``ftn.tune(base, to=..., out=...)`` (the package ftn.tuning) is imported on first use: it
    # needs the data stack (Pillow, numpy, tqdm), and ``import ftn`` stays light.
    if name == "tune":
        from .tuning.loop import tune

        return tune
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
