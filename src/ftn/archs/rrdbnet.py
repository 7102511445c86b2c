"""RRDBNet, the ESRGAN generator (Wang et al., "ESRGAN: Enhanced Super-Resolution Generative
Adversarial Networks", ECCV 2018 workshops), in BasicSR's module layout.

Parameter names follow BasicSR exactly (``conv_first``, ``body.N.rdbK.convJ``, ``conv_body``,
``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``) so a state dict is recognised as ESRGAN by
tools such as spandrel, and BasicSR / Real-ESRGAN checkpoints load directly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import check_positive_ints, check_size, pad_to_multiple, scaled_kaiming_init_

__all__ = ["RRDBNet", "RRDB", "ResidualDenseBlock"]

_SCALES: tuple[int, ...] = (1, 2, 4)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; output ``x + 0.2 * conv5(...)``.

    Args:
        channels: Input/output channels (``num_feat``).
        growth: Channels added by each of conv1..conv4 (``num_grow_ch``).
    """

    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, growth, 3, padding=1)
        self.conv2 = nn.Conv2d(channels + growth, growth, 3, padding=1)
        self.conv3 = nn.Conv2d(channels + 2 * growth, growth, 3, padding=1)
        self.conv4 = nn.Conv2d(channels + 3 * growth, growth, 3, padding=1)
        self.conv5 = nn.Conv2d(channels + 4 * growth, channels, 3, padding=1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2)
        # BasicSR initialises the dense convs at 0.1x Kaiming so each block starts near identity.
        scaled_kaiming_init_([self.conv1, self.conv2, self.conv3, self.conv4, self.conv5], 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        # Residual scaling 0.2 (ESRGAN) keeps very deep stacks trainable without batch norm.
        return x + 0.2 * x5


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs, output ``x + 0.2 * rdb3(rdb2(rdb1(x)))``."""

    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(channels, growth)
        self.rdb2 = ResidualDenseBlock(channels, growth)
        self.rdb3 = ResidualDenseBlock(channels, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """The ESRGAN generator.

    Layout::

        [pixel_unshuffle by 4 (scale 1) or 2 (scale 2), as BasicSR / Real-ESRGAN do]
        conv_first   3x3 in' -> C
        body.N       N RRDBs
        conv_body    3x3 C -> C, plus a long skip from conv_first's output
        conv_up1     nearest x2, 3x3 C -> C, LeakyReLU(0.2)
        conv_up2     nearest x2, 3x3 C -> C, LeakyReLU(0.2)
        conv_hr      3x3 C -> C, LeakyReLU(0.2)
        conv_last    3x3 C -> out

    The trunk always upsamples x4, so scales 1 and 2 first fold the input's pixels into channels
    (``in' = in * 16`` or ``in * 4``). Output size is ``(H * scale, W * scale)`` for any H, W:
    for scales 1 and 2 the input is reflect-padded to a multiple of the unshuffle factor and the
    output cropped back.

    Args:
        size: ``"full"`` (64 channels, 23 blocks, growth 32: 16,697,987 parameters at scale 4)
            or ``"mini"`` (32 channels, 3 blocks, growth 32).
        in_channels: Input image channels.
        out_channels: Output image channels.
        channels: Feature channels C (BasicSR ``num_feat``); overrides the size preset.
        blocks: Number of RRDBs (``num_block``); overrides the size preset.
        growth: Dense growth channels (``num_grow_ch``); overrides the size preset. Note that
            spandrel's ESRGAN loader assumes 32.
        scale: Upscaling factor, one of 1, 2, 4.
    """

    arch_name: str = "rrdbnet"
    #: Qualified names of the RRDBs (``re.fullmatch`` on ``named_modules()``).
    block_pattern: str = r"body\.\d+"

    _PRESETS: dict[str, dict[str, int]] = {
        "full": {"channels": 64, "blocks": 23, "growth": 32},
        "mini": {"channels": 32, "blocks": 3, "growth": 32},  # growth 32: loadable by spandrel
    }

    def __init__(
        self,
        size: str = "full",
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        channels: int | None = None,
        blocks: int | None = None,
        growth: int | None = None,
        scale: int = 4,
    ) -> None:
        super().__init__()
        check_size(size)
        if isinstance(scale, bool) or scale not in _SCALES:
            raise ValueError(f"scale must be one of {list(_SCALES)}, got {scale!r}")
        preset = self._PRESETS[size]
        channels = preset["channels"] if channels is None else channels
        blocks = preset["blocks"] if blocks is None else blocks
        growth = preset["growth"] if growth is None else growth
        check_positive_ints(
            in_channels=in_channels,
            out_channels=out_channels,
            channels=channels,
            blocks=blocks,
            growth=growth,
        )
        self.arch_options: dict = {
            "size": size,
            "in_channels": in_channels,
            "out_channels": out_channels,
            "channels": channels,
            "blocks": blocks,
            "growth": growth,
            "scale": scale,
        }
        self.scale = scale
        # 4 // scale: 4 for scale 1, 2 for scale 2, 1 (no unshuffle) for scale 4.
        self.unshuffle = 4 // scale

        self.conv_first = nn.Conv2d(in_channels * self.unshuffle**2, channels, 3, padding=1)
        self.body = nn.Sequential(*(RRDB(channels, growth) for _ in range(blocks)))
        self.conv_body = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_up1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_up2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_hr = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_last = nn.Conv2d(channels, out_channels, 3, padding=1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2)

    @property
    def size_multiple(self) -> int:
        """Tiles must start at multiples of this (scales 1 and 2 pixel-unshuffle the input)."""
        return self.unshuffle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map an (N, in, H, W) image to an (N, out, H*scale, W*scale) image."""
        h, w = x.shape[-2:]
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(pad_to_multiple(x, self.unshuffle), self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        return out[..., : h * self.scale, : w * self.scale]
