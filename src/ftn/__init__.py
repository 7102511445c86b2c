"""ftn: continuous-level image processing with Filter Transition Networks and their baselines.

Turn a network trained for one level (noise sigma 20, JPEG quality 40, a pixel loss, style A) into one
that serves every level up to a second one, chosen at run time by alpha in [0, 1]::

    import ftn
    net = ftn.build_arch("adafm_net")          # train it at level 1
    model = ftn.attach(net, "ftn", groups=16)  # stage 2 trains model.tuner_parameters() at alpha=1
    with model.alpha(0.5):
        y = model(x)
    plain = model.export(0.5)                  # a plain AdaFM-Net with the alpha=0.5 weights

An image in, an image out, at a level (``ftn.restore``, :mod:`ftn.api`)::

    clean = ftn.restore("photo.png", model="denoise", level=35)    # a PIL image; numpy in, numpy out

Several knobs, more than two levels: ``ftn.attach_axes(net, "ftn", [ftn.AxisSpec("sigma", 4), "quality"])``
(:mod:`ftn.methods.axes`).

This module stays light: it imports torch and the library's core only.
"""

from .archs import ARCHS, build_arch
from .axes_io import load_axes, save_axes
from .control import Control, check_alpha
from .io import load, load_base, save
from .levels import Levels
from .methods import METHODS, AxesModel, AxisSpec, Capabilities, ExportNotSupported, TunableModel, attach, attach_axes, merge_axes

__version__ = "0.1.0"

__all__ = [
    "ARCHS",
    "METHODS",
    "AxesModel",
    "AxisSpec",
    "Capabilities",
    "Control",
    "ExportNotSupported",
    "Levels",
    "TunableModel",
    "attach",
    "attach_axes",
    "build_arch",
    "check_alpha",
    "load",
    "load_axes",
    "load_base",
    "merge_axes",
    "save",
    "save_axes",
    "__version__",
]


def __getattr__(name: str) -> object:
    # ``ftn.tune(base, to=..., out=...)`` (the package ftn.tuning) is imported on first use: it
    # needs the data stack (Pillow, numpy, tqdm), and ``import ftn`` stays light.
    if name == "tune":
        from .tuning.loop import tune

        return tune
    # ``ftn.restore(image, model=..., level=...)``, the one-line API, likewise: it needs Pillow and numpy.
    if name == "restore":
        from .api import restore

        return restore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
