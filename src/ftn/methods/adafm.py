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
A conv without bias gets no shift t at k = 1 (scale only), so its export needs no bias either and keeps
the base's own key layout.
k = 3 or 5 (the original paper uses 5x5 for denoising) cannot be folded into a conv of the base
architecture's shape, so those models do not export.

Other kernel layers: after an ``nn.ConvTranspose2d`` the modulation is the same depth-wise conv on its
output (folded on the output-channel axis of its (C_in, C_out/g, k, k) weight for k = 1). After an
``nn.Linear`` it is the k = 1 case on the last axis, a per-feature scale and shift that folds into the
layer; k = 3 or 5 is refused there with a one-line message (a linear output has no spatial grid).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn
from torch import Tensor

from ._kernels import KERNEL_LAYERS, alpha_for, from_out_in, out_channels, run, to_out_in
from .base import Capabilities, KernelCache, MethodSpec, TunableLayer

__all__ = ["AdaFMConfig", "AdaFMLayer", "AdaFMConv2d", "SPEC"]


@dataclass
class AdaFMConfig:
    """``kernel_size``: size of the depth-wise modulation filter, 1 (foldable), 3 or 5."""

    kernel_size: int = 1

    def __post_init__(self) -> None:
        if self.kernel_size not in (1, 3, 5):
            raise ValueError(f"kernel_size must be 1, 3 or 5, got {self.kernel_size!r}")


class AdaFMLayer(TunableLayer):
    """A kernel layer followed by an alpha-scaled, zero-initialised depth-wise residual modulation.

    ``nn.Conv2d`` and ``nn.ConvTranspose2d`` take any kernel size; ``nn.Linear`` takes
    ``kernel_size=1`` only (a per-feature scale and shift on its last axis, which folds into the
    layer): a spatial filter has no grid to run on in a linear layer's output.
    """

    def __init__(self, base: nn.Module, config: AdaFMConfig) -> None:
        if not isinstance(base, KERNEL_LAYERS):
            raise TypeError(f"AdaFM tunes {[t.__name__ for t in KERNEL_LAYERS]}, not {type(base).__name__}")
        k = config.kernel_size
        if isinstance(base, nn.Linear) and k != 1:
            raise ValueError(
                f"AdaFM with kernel_size={k} filters feature maps spatially, which an nn.Linear output has not; "
                "use kernel_size=1, or leave the linear layers out (exclude=...)"
            )
        super().__init__(base)
        c = out_channels(base)
        # A depth-wise conv for every kind, so the tuner's tensors have one layout (k = 1: (C, 1, 1, 1)).
        # k = 1 on a layer without bias has no shift: the folded layer then needs no bias either, and
        # the export keeps the base's key layout (DnCNN's convs have none).
        shift = k != 1 or base.bias is not None
        self.adafm = nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=shift)
        nn.init.zeros_(self.adafm.weight)
        if shift:
            nn.init.zeros_(self.adafm.bias)
        self._cache = KernelCache()

    def folded_conv(self, alpha: float) -> tuple[Tensor, Tensor | None]:
        """(weight, bias) of the single layer equal to layer + alpha * DW_1 (k = 1 only), in the
        layer's own weight layout."""
        scale = 1.0 + alpha * self.adafm.weight.view(-1)
        weight = from_out_in(self.base, to_out_in(self.base, self.base.weight) * scale.view(-1, 1, 1, 1))
        if self.base.bias is None:
            return weight, None  # no shift either (see __init__)
        return weight, alpha * self.adafm.bias + scale * self.base.bias

    def modulation(self, z: Tensor) -> Tensor:
        """DW_k(z): the depth-wise modulation of the layer's output (per feature on a linear layer's last axis)."""
        if isinstance(self.base, nn.Linear):
            scaled = z * self.adafm.weight.view(-1)
            return scaled if self.adafm.bias is None else scaled + self.adafm.bias
        return self.adafm(z)

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        alpha = self.control.value
        if isinstance(alpha, float):
            if alpha == 0.0:
                return self.base(x, *args, **kwargs)
            if self.adafm.kernel_size[0] == 1:
                inputs = [self.base.weight, self.adafm.weight]
                if self.base.bias is not None:
                    inputs += [self.base.bias, self.adafm.bias]
                weight, bias = self._cache.get(alpha, inputs, lambda: self.folded_conv(alpha))
                return run(self.base, x, weight, bias, *args, **kwargs)
            z = self.base(x, *args, **kwargs)
            return z + alpha * self.modulation(z)
        z = self.base(x, *args, **kwargs)
        return z + alpha_for(self.control, self.base, z) * self.modulation(z)

    def export_module(self, alpha: float) -> nn.Module:
        if self.adafm.kernel_size[0] != 1:
            return super().export_module(alpha)
        weight, bias = self.folded_conv(alpha)
        layer = self.base
        layer.weight = nn.Parameter(weight.detach().clone(), requires_grad=layer.weight.requires_grad)
        if bias is not None:
            layer.bias = nn.Parameter(bias.detach().clone(), requires_grad=layer.bias.requires_grad)
        return layer


#: The earlier name, from when AdaFM tuned convs only.
AdaFMConv2d = AdaFMLayer


def _capabilities(config: AdaFMConfig) -> Capabilities:
    return Capabilities(exact_export=config.kernel_size == 1, per_pixel=True, per_sample=True)


SPEC = MethodSpec(
    name="adafm",
    config_class=AdaFMConfig,
    make_layer=AdaFMLayer,
    default_targets="conv",
    capabilities=_capabilities,
    summary="AdaFM: alpha-scaled depth-wise residual modulation after each conv (k=1 folds into the conv)",
)
