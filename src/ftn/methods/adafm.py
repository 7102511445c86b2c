r"""Adaptive Feature Modification layers (He, Dong, Qiao; CVPR 2019).

After each target conv, a depth-wise k x k conv with bias modifies the feature maps, in residual
form and scaled by alpha (weight and bias alike)::

    z = X * f + b
    Y = z + alpha . DW_k(z)          (per pixel: Y = z + A . DW_k(z))

DW_k starts at zero, so the model is unchanged until stage 2 trains it. The modification is linear
in the features, which is what limits AdaFM on tasks whose levels lie far apart.

For k = 1 the modification is a per-channel scale s and shift t and folds into the conv::

    Y = (1 + alpha s) . (X * f + b) + alpha t  =  X * ((1 + alpha s) f) + ((1 + alpha s) b + alpha t)

so k = 1 exports exactly to a plain conv and, at a fixed alpha, costs what the plain network costs.
k = 3 or 5 (the original paper uses 5x5 for denoising) cannot be folded into a conv of the base
architecture's shape, so those models do not export.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn
from torch import Tensor

from .base import Capabilities, KernelCache, MethodSpec, TunableLayer

__all__ = ["AdaFMConfig", "AdaFMConv2d", "SPEC"]


@dataclass
class AdaFMConfig:
    """``kernel_size``: size of the depth-wise modulation filter, 1 (foldable), 3 or 5."""

    kernel_size: int = 1

    def __post_init__(self) -> None:
        if self.kernel_size not in (1, 3, 5):
            raise ValueError(f"kernel_size must be 1, 3 or 5, got {self.kernel_size!r}")


class AdaFMConv2d(TunableLayer):
    """A conv followed by an alpha-scaled, zero-initialised depth-wise residual modulation."""

    base: nn.Conv2d

    def __init__(self, base: nn.Conv2d, config: AdaFMConfig) -> None:
        super().__init__(base)
        k = config.kernel_size
        c = base.out_channels
        self.adafm = nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=True)
        nn.init.zeros_(self.adafm.weight)
        nn.init.zeros_(self.adafm.bias)
        self._cache = KernelCache()

    def folded_conv(self, alpha: float) -> tuple[Tensor, Tensor | None]:
        """(weight, bias) of the single conv equal to conv + alpha * DW_1 (k = 1 only)."""
        scale = 1.0 + alpha * self.adafm.weight.view(-1)
        weight = self.base.weight * scale.view(-1, 1, 1, 1)
        bias = alpha * self.adafm.bias
        if self.base.bias is not None:
            bias = bias + scale * self.base.bias
        return weight, bias

    def forward(self, x: Tensor) -> Tensor:
        alpha = self.control.value
        if isinstance(alpha, float):
            if alpha == 0.0:
                return self.base(x)
            if self.adafm.kernel_size[0] == 1:
                inputs = [self.base.weight, self.adafm.weight, self.adafm.bias]
                if self.base.bias is not None:
                    inputs.append(self.base.bias)
                weight, bias = self._cache.get(alpha, inputs, lambda: self.folded_conv(alpha))
                return self.base._conv_forward(x, weight, bias)
            z = self.base(x)
            return z + alpha * self.adafm(z)
        z = self.base(x)
        return z + self.control.for_output(z) * self.adafm(z)

    def export_module(self, alpha: float) -> nn.Conv2d:
        if self.adafm.kernel_size[0] != 1:
            return super().export_module(alpha)
        weight, bias = self.folded_conv(alpha)
        conv = self.base
        conv.weight = nn.Parameter(weight.detach().clone(), requires_grad=conv.weight.requires_grad)
        conv.bias = nn.Parameter(bias.detach().clone())
        return conv


def _capabilities(config: AdaFMConfig) -> Capabilities:
    return Capabilities(exact_export=config.kernel_size == 1, per_pixel=True, per_sample=True)


SPEC = MethodSpec(
    name="adafm",
    config_class=AdaFMConfig,
    make_layer=AdaFMConv2d,
    default_targets="conv",
    capabilities=_capabilities,
    summary="AdaFM: alpha-scaled depth-wise residual modulation after each conv (k=1 folds into the conv)",
)
