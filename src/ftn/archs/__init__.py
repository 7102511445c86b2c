"""Base network architectures: plain ``nn.Module`` s with no continual-level method code.

Every architecture class has

* ``arch_name`` -- its key in :data:`ARCHS`;
* ``block_pattern`` -- a regex that ``re.fullmatch`` es the qualified names (from
  ``model.named_modules()``) of its residual blocks, where methods attach tuning branches;
* a ``size`` argument (``"full"``: the published network, ``"mini"``: a small variant that
  trains on a laptop CPU in minutes) plus explicit overrides (``channels``, ``blocks``, ...);

and every instance stores ``arch_options``, the JSON-serialisable keyword arguments that
rebuild it: ``build_arch(model.arch_name, **model.arch_options)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from .adafm_net import AdaFMNet
from .cfsnet import CFSNet
from .dncnn import DnCNN
from .rrdbnet import RRDBNet
from .transform_net import TransformNet
from .unet import ResUNet

__all__ = ["ARCHS", "build_arch", "AdaFMNet", "CFSNet", "DnCNN", "RRDBNet", "TransformNet", "ResUNet"]

#: Architecture name -> class (called with the options as keyword arguments).
ARCHS: dict[str, Callable[..., nn.Module]] = {
    cls.arch_name: cls for cls in (AdaFMNet, CFSNet, DnCNN, RRDBNet, TransformNet, ResUNet)
}


def build_arch(name: str, **options: object) -> nn.Module:
    """Build the architecture registered as ``name`` with keyword ``options``.

    Raises:
        ValueError: ``name`` is not in :data:`ARCHS` (the message lists the known names), or an
            option has a bad value.
        TypeError: an option is not accepted by that architecture (the message names it).
    """
    try:
        factory = ARCHS[name]
    except KeyError:
        known = ", ".join(sorted(ARCHS))
        raise ValueError(f"unknown architecture {name!r}; known: {known}") from None
    # Check names up front so the error names the option and lists the valid ones,
    # instead of Python's bare "unexpected keyword argument".
    accepted = [
        p.name
        for p in inspect.signature(factory).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for architecture {name!r}; "
            f"accepted: {', '.join(accepted)}"
        )
    return factory(**options)
