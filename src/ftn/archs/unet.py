"""ResUNet: a small multi-scale restoration network with residual blocks at every scale.

The layout of DRUNet (Zhang et al., "Plug-and-Play Image Restoration with Deep Denoiser Prior",
TPAMI 2021), scaled down for CPU budgets: an encoder that halves the resolution and doubles the
channels at each scale, residual blocks at every scale, and a decoder that adds the encoder's
features back (additive skips, as DRUNet). Most convolutions run at 1/4 or 1/16 of the pixels, so
the receptive field is large for a small per-pixel cost: the point of comparing it with the
single-scale mini AdaFM-Net (``benchmarks/arch_study.py``). Every layer is an ``nn.Conv2d`` (the
down-sampling is a stride-2 conv, the up-sampling a conv + PixelShuffle), so every method of
``ftn.methods`` attaches to it, and an exported file is a plain ResUNet.
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import ResidualBlock, check_bool, check_positive_ints, check_size, pad_to_multiple, scaled_kaiming_init_

__all__ = ["ResUNet"]


class ResUNet(nn.Module):
    """Residual U-Net (no method code; ``ftn.methods`` adds the control).

    Layout for ``scales = 3`` (module names in brackets; C = ``channels``, n = ``blocks``)::

        head         3x3 in -> C                                  full resolution
        enc.0        n residual blocks at C
        down.0       3x3 stride 2, C -> 2C                        1/2
        enc.1        n residual blocks at 2C
        down.1       3x3 stride 2, 2C -> 4C                       1/4
        body         n residual blocks at 4C                      (the bottleneck)
        up.1         3x3 4C -> 4 * 2C, PixelShuffle(2), + enc.1 output
        dec.1        n residual blocks at 2C
        up.0         3x3 2C -> 4 * C, PixelShuffle(2), + enc.0 output
        dec.0        n residual blocks at C
        tail         3x3 C -> out                                 (+ input with image_skip)

    Any H, W works: the input is reflect-padded to a multiple of ``2 ** (scales - 1)`` and the
    output cropped back.

    Args:
        size: ``"full"`` (64 channels, 4 blocks per stage, 4 scales: DRUNet's widths and depth)
            or ``"mini"`` (16 channels, 2 blocks, 3 scales) for CPU budgets.
        in_channels: Input image channels.
        out_channels: Output image channels.
        channels: Channels at full resolution (doubled at each scale); overrides the preset.
        blocks: Residual blocks per stage (each encoder, the bottleneck, each decoder).
        scales: Number of resolutions (1 = no down-sampling).
        image_skip: Global residual learning, ``output = input + net(input)``.
    """

    arch_name: str = "resunet"
    block_pattern: str = r"(enc\.\d+|body|dec\.\d+)\.\d+"

    _PRESETS: dict[str, dict[str, int]] = {
        "full": {"channels": 64, "blocks": 4, "scales": 4},
        "mini": {"channels": 16, "blocks": 2, "scales": 3},
    }

    def __init__(
        self,
        size: str = "full",
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        channels: int | None = None,
        blocks: int | None = None,
        scales: int | None = None,
        image_skip: bool = True,
    ) -> None:
        super().__init__()
        check_size(size)
        preset = self._PRESETS[size]
        channels = preset["channels"] if channels is None else channels
        blocks = preset["blocks"] if blocks is None else blocks
        scales = preset["scales"] if scales is None else scales
        check_positive_ints(in_channels=in_channels, out_channels=out_channels, channels=channels,
                            blocks=blocks, scales=scales)
        check_bool(image_skip=image_skip)
        if scales > 6:
            raise ValueError(f"scales must be at most 6, got {scales}")
        if image_skip and in_channels != out_channels:
            raise ValueError(f"image_skip needs in_channels == out_channels, got {in_channels} and {out_channels}")
        self.arch_options: dict = {
            "size": size, "in_channels": in_channels, "out_channels": out_channels,
            "channels": channels, "blocks": blocks, "scales": scales, "image_skip": image_skip,
        }
        self.image_skip = image_skip
        self.scales = scales
        width = [channels * 2**s for s in range(scales)]

        def stage(c: int) -> nn.Sequential:
            return nn.Sequential(*(ResidualBlock(c) for _ in range(blocks)))

        self.head = nn.Conv2d(in_channels, width[0], 3, padding=1)
        self.enc = nn.ModuleList(stage(width[s]) for s in range(scales - 1))
        self.down = nn.ModuleList(nn.Conv2d(width[s], width[s + 1], 3, stride=2, padding=1) for s in range(scales - 1))
        self.body = stage(width[-1])
        self.up = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width[s + 1], 4 * width[s], 3, padding=1), nn.PixelShuffle(2))
            for s in range(scales - 1)
        )
        self.dec = nn.ModuleList(stage(width[s]) for s in range(scales - 1))
        self.tail = nn.Conv2d(width[0], out_channels, 3, padding=1)
        scaled_kaiming_init_([*self.enc, self.body, *self.dec])

    @property
    def size_multiple(self) -> int:
        """Tiles must start at multiples of this (each scale samples down by 2)."""
        return 2 ** (self.scales - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map an (N, in, H, W) image to an (N, out, H, W) image."""
        h, w = x.shape[-2:]
        feat = self.head(pad_to_multiple(x, self.size_multiple))
        skips = []
        for enc, down in zip(self.enc, self.down):
            feat = enc(feat)
            skips.append(feat)
            feat = down(feat)
        feat = self.body(feat)
        for s in reversed(range(self.scales - 1)):
            feat = self.dec[s](self.up[s](feat) + skips[s])
        out = self.tail(feat)[..., :h, :w]
        return x + out if self.image_skip else out
