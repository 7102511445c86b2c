"""Tuning methods, each a plug-in over any conv net: FTN and the baselines DNI, AdaFM, CFSNet, Dynamic-Net;
multi-axis, multi-anchor models of FTN and DNI in :mod:`ftn.methods.axes`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn as nn

from ..control import AlphaLike
from . import adafm, cfsnet, dni, dynamic_net, ftn
from ._kernels import KERNEL_LAYERS
from .axes import AxesModel, AxisSpec, attach_axes, merge_axes
from .base import Capabilities, ExportNotSupported, MethodSpec, TunableLayer, TunableModel, select_targets

__all__ = ["METHODS", "attach", "Capabilities", "ExportNotSupported", "MethodSpec", "TunableLayer", "TunableModel",
           "AxesModel", "AxisSpec", "attach_axes", "merge_axes"]

#: name -> spec (config class, layer factory, default targets, capabilities of the default options)
METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (ftn.SPEC, dni.SPEC, adafm.SPEC, cfsnet.SPEC, dynamic_net.SPEC)}


def attach(
    model: nn.Module,
    method: str,
    *,
    targets: str | Sequence[str] | Sequence[type] | None = None,
    exclude: str | Sequence[str] | None = None,
    alpha: AlphaLike = 0.0,
    allow_extrapolation: bool = False,
    **options: Any,
) -> TunableModel:
    """Attach a tuning method to ``model`` (modified in place) and return the tunable model.

    Args:
        model: any ``nn.Module``; its target modules are replaced by tunable layers.
        method: one of ``ftn.METHODS`` ("ftn", "dni", "adafm", "cfsnet", "dynamic_net").
        targets: which modules to tune. None: the method's default (every ``nn.Conv2d``,
            ``nn.ConvTranspose2d`` and ``nn.Linear`` for ftn and adafm; every module owning tensors for dni; ``model.block_pattern`` for cfsnet and
            dynamic_net). A regex (full match on qualified names), a list of names, or a list of types.
        exclude: a regex or a list of names left untouched.
        alpha: the initial control (0 = level 1).
        allow_extrapolation: accept alphas outside [0, 1].
        **options: the method's options, e.g. ``groups=16`` for ftn, ``kernel_size=5`` for adafm.

    Example:
        >>> net = ftn.build_arch("adafm_net", size="mini")
        >>> tunable = ftn.attach(net, "ftn", groups=16)
        >>> tunable.freeze_base(); opt = torch.optim.Adam(tunable.tuner_parameters())
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"attach needs an nn.Module, got {type(model).__name__}")
    if isinstance(model, TunableModel) or any(isinstance(m, TunableLayer) for m in model.modules()):
        raise ValueError("this model already has a tuning method attached; attach to the plain base network")
    spec = METHODS.get(method)
    if spec is None:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    config = spec.config(**options)
    names = select_targets(model, targets, exclude, spec.default_targets, method)
    if spec.default_targets == "conv":
        wrong = [n for n in names if not isinstance(model.get_submodule(n) if n else model, KERNEL_LAYERS)]
        if wrong:
            raise ValueError(
                f"method {method!r} tunes nn.Conv2d, nn.ConvTranspose2d and nn.Linear layers only; "
                f"these targets are not: {wrong[:5]}"
            )
    return TunableModel(model, spec, config, names, alpha=alpha, allow_extrapolation=allow_extrapolation)
