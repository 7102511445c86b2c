r"""Controllable Feature Space Network (Wang, Guo, Tian, Yang; ICCV 2019).

Each main block M_i (e.g. a residual block) gets a tuning block T_i of the same shape, and the two
are coupled per channel::

    x_i = (1 - a_i) . M_i(x_{i-1}) + a_i . T_i(x_{i-1}),        a_i = alpha . v_i

with v_i a learned per-channel vector (per pixel: a_i = A . v_i, A resized to the block's grid).
Both branches read the previous coupled output, so at alpha = 0 the model is exactly the base network
and the tuning branch is not even run.

Choices (documented because they differ from the official code, which derives a_i from alpha through
fully connected layers and starts T_i from random weights): a_i = alpha . v_i as written above, v_i
initialised to 1, T_i initialised as a copy of M_i (so the model is unchanged at any alpha until
stage 2 trains it, and stage 2 starts from level 1). Option ``tuning_init="random"`` re-initialises
T_i's convs instead, as the original does.

The coupling mixes two branches' features, which no plain base network reproduces, so CFSNet
models do not export; the cost at alpha > 0 is about twice the tuned blocks' cost.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from .base import Capabilities, MethodSpec, TunableLayer, output_channels

__all__ = ["CFSNetConfig", "CFSNetBlock", "SPEC"]


@dataclass
class CFSNetConfig:
    """``tuning_init``: "copy" (T_i starts as M_i) or "random"; ``channels``: override inference."""

    tuning_init: str = "copy"
    channels: int | None = None

    def __post_init__(self) -> None:
        if self.tuning_init not in ("copy", "random"):
            raise ValueError(f"tuning_init must be 'copy' or 'random', got {self.tuning_init!r}")


class CFSNetBlock(TunableLayer):
    """A main block coupled with its tuning block: (1 - alpha v) M(x) + alpha v T(x)."""

    def __init__(self, base: nn.Module, config: CFSNetConfig) -> None:
        super().__init__(base)
        channels = config.channels or output_channels(base)
        self.tuning = copy.deepcopy(base)
        for p in self.tuning.parameters():
            p.requires_grad_(True)
        if config.tuning_init == "random":
            for m in self.tuning.modules():
                if hasattr(m, "reset_parameters") and m is not self.tuning:
                    m.reset_parameters()
        self.coupling = nn.Parameter(torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        alpha = self.control.value
        main = self.base(x)
        if isinstance(alpha, float) and alpha == 0.0:
            return main
        tuned = self.tuning(x)
        a = self.control.for_output(main) if not isinstance(alpha, float) else alpha
        coefficient = a * self.coupling.view(1, -1, 1, 1)
        return main + coefficient * (tuned - main)


def _capabilities(config: CFSNetConfig) -> Capabilities:
    return Capabilities(exact_export=False, per_pixel=True, per_sample=True)


SPEC = MethodSpec(
    name="cfsnet",
    config_class=CFSNetConfig,
    make_layer=CFSNetBlock,
    default_targets="blocks",
    capabilities=_capabilities,
    summary="CFSNet: a tuning block beside each main block, coupled per channel by alpha * v",
)
