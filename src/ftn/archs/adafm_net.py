"""AdaFM-Net base network (He et al., "Modulating Image Restoration with Continual Levels via
Adaptive Feature Modification Layers", CVPR 2019).

The plain (un-modulated) SRResNet-like network of the paper, used for denoising and JPEG
deblocking: a stride-2 head conv halves the resolution so the 16 residual blocks run at 1/4 of
the pixels, and a pixel-shuffle stage restores the input size.
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import ResidualBlock, check_bool, check_positive_ints, check_size, pad_to_multiple, scaled_kaiming_init_

__all__ = ["AdaFMNet"]


class AdaFMNet(nn.Module):
    """The AdaFM-Net base network (no AdaFM layers; those are added by ``ftn.methods``).

    Layout (module names in brackets)::

        conv_first  3x3 stride 2, in -> C                  (halves H and W)
        body.N      N residual blocks conv-ReLU-conv + identity
        conv_body   3x3 C -> C, plus a long skip from conv_first's output
        conv_up     3x3 C -> 4C, PixelShuffle(2), ReLU     (back to full resolution)
        conv_hr     3x3 C -> C, ReLU
        conv_last   3x3 C -> out

    Any H, W works: the input is reflect-padded to even size and the output cropped back.

    Args:
        size: ``"full"`` (64 channels, 16 blocks: 1,406,787 parameters as in the paper) or
            ``"mini"`` (32 channels, 8 blocks) for quick CPU runs.
        in_channels: Input image channels.
        out_channels: Output image channels.
        channels: Feature channels C; overrides the size preset.
        blocks: Number of residual blocks; overrides the size preset.
        image_skip: Global residual learning, ``output = input + net(input)``; needs
            ``in_channels == out_channels``. Off in the paper.
    """

    arch_name: str = "adafm_net"
    #: Qualified names of the residual blocks (``re.fullmatch`` on ``named_modules()``).
    block_pattern: str = r"body\.\d+"

    _PRESETS: dict[str, dict[str, int]] = {
        "full": {"channels": 64, "blocks": 16},
        "mini": {"channels": 32, "blocks": 8},
    }

    def __init__(
        self,
        size: str = "full",
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        channels: int | None = None,
        blocks: int | None = None,
        image_skip: bool = False,
    ) -> None:
        super().__init__()
        check_size(size)
        preset = self._PRESETS[size]
        channels = preset["channels"] if channels is None else channels
        blocks = preset["blocks"] if blocks is None else blocks
        check_positive_ints(
            in_channels=in_channels, out_channels=out_channels, channels=channels, blocks=blocks
        )
        check_bool(image_skip=image_skip)
        if image_skip and in_channels != out_channels:
            raise ValueError(
                "image_skip needs in_channels == out_channels, "
                f"got {in_channels} and {out_channels}"
            )
        self.arch_options: dict = {
            "size": size,
            "in_channels": in_channels,
            "out_channels": out_channels,
            "channels": channels,
            "blocks": blocks,
            "image_skip": image_skip,
        }
        self.image_skip = image_skip

        self.conv_first = nn.Conv2d(in_channels, channels, 3, stride=2, padding=1)
        self.body = nn.Sequential(*(ResidualBlock(channels) for _ in range(blocks)))
        self.conv_body = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_up = nn.Conv2d(channels, channels * 4, 3, padding=1)
        self.pixel_shuffle = nn.PixelShuffle(2)
        self.conv_hr = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_last = nn.Conv2d(channels, out_channels, 3, padding=1)
        self.relu = nn.ReLU()
        scaled_kaiming_init_(self.body)

    @property
    def size_multiple(self) -> int:
        """Tiles must start at multiples of this (the first conv samples down by 2)."""
        return 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map an (N, in, H, W) image to an (N, out, H, W) image."""
        h, w = x.shape[-2:]
        feat = self.conv_first(pad_to_multiple(x, 2))
        feat = feat + self.conv_body(self.body(feat))
        out = self.relu(self.pixel_shuffle(self.conv_up(feat)))
        out = self.conv_last(self.relu(self.conv_hr(out)))
        out = out[..., :h, :w]
        return x + out if self.image_skip else out
