r"""Dynamic-Net (Shoshan, Mechrez, Zelnik-Manor; ICCV 2019).

Tuning blocks are added at chosen points of the main network, scaled by alpha::

    y = M(x),    y' = y + alpha . TB(y)          (per pixel: y' = y + A . TB(y))

with TB three 3x3 convs (ReLU between them). TB's last conv starts at zero, so the model is
unchanged until stage 2 trains it. Only the chosen points change, which is why Dynamic-Net struggles
to reach a second level far from the first. The extra convs are not foldable: no export.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn
from torch import Tensor

from .base import Capabilities, MethodSpec, TunableLayer, output_channels

__all__ = ["DynamicNetConfig", "DynamicNetPoint", "SPEC"]


@dataclass
class DynamicNetConfig:
    """``hidden``: channels inside a tuning block (default: the point's channels);
    ``channels``: override the channel count inferred from the point's last conv."""

    hidden: int | None = None
    channels: int | None = None


class DynamicNetPoint(TunableLayer):
    """A module followed by an alpha-scaled tuning block: M(x) + alpha TB(M(x))."""

    def __init__(self, base: nn.Module, config: DynamicNetConfig) -> None:
        super().__init__(base)
        c = config.channels or output_channels(base)
        h = config.hidden or c
        self.tuning = nn.Sequential(
            nn.Conv2d(c, h, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(h, h, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(h, c, 3, padding=1),
        )
        nn.init.zeros_(self.tuning[-1].weight)
        nn.init.zeros_(self.tuning[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        alpha = self.control.value
        y = self.base(x)
        if isinstance(alpha, float):
            return y if alpha == 0.0 else y + alpha * self.tuning(y)
        return y + self.control.for_output(y) * self.tuning(y)


def _capabilities(config: DynamicNetConfig) -> Capabilities:
    return Capabilities(exact_export=False, per_pixel=True, per_sample=True)


SPEC = MethodSpec(
    name="dynamic_net",
    config_class=DynamicNetConfig,
    make_layer=DynamicNetPoint,
    default_targets="blocks",
    capabilities=_capabilities,
    summary="Dynamic-Net: tuning blocks y + alpha * TB(y) at chosen points",
)
