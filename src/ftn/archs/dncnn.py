"""DnCNN: the residual denoiser of Zhang et al. ("Beyond a Gaussian Denoiser", TIP 2017).

A plain stack of 3x3 convolutions without bias: conv + ReLU, then ``depth - 2`` times
conv + BatchNorm + ReLU, then a conv back to the image channels. The network predicts the
**noise**, so ``output = input - net(input)``.

The module names follow the widely used PyTorch port (SaoYan/DnCNN-PyTorch): one ``nn.Sequential``
called ``dncnn``, so the state-dict keys are ``dncnn.0.weight``, ``dncnn.3.running_mean`` ... and the
published DnCNN-S (17 layers) and DnCNN-B (20 layers) pickles load with ``strict=True`` once their
``module.`` prefix is stripped (``ftn.load_base`` does both). This is the case of tuning a network
someone else trained, with BatchNorm inside: methods keep the BatchNorm layers frozen.
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import check_positive_ints, check_size

__all__ = ["DnCNN"]


class DnCNN(nn.Module):
    """DnCNN (no method code; ``ftn.methods`` adds the control).

    Layout (indices of ``dncnn``; D = ``depth``, C = ``channels``)::

        0, 1                    conv 3x3 in -> C, ReLU
        3i-1, 3i, 3i+1          conv 3x3 C -> C, BatchNorm, ReLU      for i = 1 .. D-2
        3(D-1)-1                conv 3x3 C -> out
        output = input - net(input)

    Args:
        size: ``"full"`` (17 layers, 64 channels: DnCNN-S) or ``"mini"`` (6 layers, 16 channels).
        in_channels: Input image channels (1 for the published grey models).
        out_channels: Output channels (must equal ``in_channels``: the output is input - noise).
        channels: Feature channels; overrides the preset.
        depth: Number of conv layers (17 for DnCNN-S, 20 for DnCNN-B); overrides the preset.
    """

    arch_name: str = "dncnn"
    #: The middle convs (indices 2, 5, ..., 3(D-2)-1): the published layout has no named blocks, so
    #: block methods (CFSNet, Dynamic-Net) tune each middle conv. Set per instance from ``depth``;
    #: this class value is the 17-layer one.
    block_pattern: str = r"dncnn\.(" + "|".join(str(3 * i - 1) for i in range(1, 16)) + ")"

    _PRESETS: dict[str, dict[str, int]] = {
        "full": {"channels": 64, "depth": 17},
        "mini": {"channels": 16, "depth": 6},
    }

    def __init__(
        self,
        size: str = "full",
        *,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: int | None = None,
        depth: int | None = None,
    ) -> None:
        super().__init__()
        check_size(size)
        preset = self._PRESETS[size]
        channels = preset["channels"] if channels is None else channels
        depth = preset["depth"] if depth is None else depth
        check_positive_ints(in_channels=in_channels, out_channels=out_channels, channels=channels, depth=depth)
        if depth < 2:
            raise ValueError(f"depth must be at least 2 (first and last conv), got {depth}")
        if in_channels != out_channels:
            raise ValueError(f"DnCNN subtracts its output from its input: in_channels ({in_channels}) "
                             f"must equal out_channels ({out_channels})")
        self.arch_options: dict = {
            "size": size, "in_channels": in_channels, "out_channels": out_channels,
            "channels": channels, "depth": depth,
        }
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [
                nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.Conv2d(channels, out_channels, 3, padding=1, bias=False))
        self.dncnn = nn.Sequential(*layers)
        self.block_pattern = r"dncnn\.(" + "|".join(str(3 * i - 1) for i in range(1, depth - 1)) + ")"

    @property
    def size_multiple(self) -> int:
        """Any tile position works (no down-sampling)."""
        return 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map an (N, C, H, W) noisy image to the denoised image ``x - net(x)``."""
        return x - self.dncnn(x)
