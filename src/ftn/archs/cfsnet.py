"""CFSNet main branch (Wang et al., "CFSNet: Toward a Controllable Feature Space for Image
Restoration", ICCV 2019).

Only the main branch lives here; the tuning branch and coupling modules are method code and are
attached by ``ftn.methods`` to the blocks matched by :attr:`CFSNet.block_pattern`.
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import (
    ResidualBlock,
    check_bool,
    check_positive_ints,
    check_size,
    scaled_kaiming_init_,
)

__all__ = ["CFSNet"]

_SCALES: tuple[int, ...] = (1, 2, 3, 4)


def _make_upsampler(channels: int, scale: int) -> nn.Module:
    """EDSR-style sub-pixel upsampler: conv C -> C*s*s + PixelShuffle(s); x4 is two x2 stages.

    No activation inside, as in EDSR/CFSNet. Scale 1 gives an identity so the forward pass has a
    single code path.
    """
    if scale == 1:
        return nn.Identity()
    factors = [2, 2] if scale == 4 else [scale]
    layers: list[nn.Module] = []
    for factor in factors:
        layers += [
            nn.Conv2d(channels, channels * factor * factor, 3, padding=1),
            nn.PixelShuffle(factor),
        ]
    return nn.Sequential(*layers)


class CFSNet(nn.Module):
    """The CFSNet main branch.

    Layout (module names in brackets)::

        head      3x3 in -> C
        body.N    N residual blocks conv-ReLU-conv + identity
                  + long skip from head's output (as in the paper's code)
        upsample  scale 1: identity; 2/3: conv C -> C*s*s + PixelShuffle(s);
                  4: two such x2 stages (upsample.0..3)
        tail      3x3 C -> out

    Output size is ``(H * scale, W * scale)`` for any H, W.

    Args:
        size: ``"full"`` (64 channels; 10 blocks for scale 1 as in the paper's denoising and
            deblocking setting, 30 blocks for scale > 1 as in its SR setting) or ``"mini"``
            (32 channels, 4 blocks).
        in_channels: Input image channels.
        out_channels: Output image channels.
        channels: Feature channels C; overrides the size preset.
        blocks: Number of residual blocks; overrides the size preset.
        scale: Upscaling factor, one of 1, 2, 3, 4.
        image_skip: Global residual learning, ``output = input + net(input)``; only for
            ``scale == 1`` and ``in_channels == out_channels``.
    """

    arch_name: str = "cfsnet"
    #: Qualified names of the residual blocks (``re.fullmatch`` on ``named_modules()``).
    block_pattern: str = r"body\.\d+"

    def __init__(
        self,
        size: str = "full",
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        channels: int | None = None,
        blocks: int | None = None,
        scale: int = 1,
        image_skip: bool = False,
    ) -> None:
        super().__init__()
        check_size(size)
        if isinstance(scale, bool) or scale not in _SCALES:
            raise ValueError(f"scale must be one of {list(_SCALES)}, got {scale!r}")
        if channels is None:
            channels = 64 if size == "full" else 32
        if blocks is None:
            # The paper uses 10 main blocks for denoising/deblocking and 30 for SR.
            blocks = (10 if scale == 1 else 30) if size == "full" else 4
        check_positive_ints(
            in_channels=in_channels, out_channels=out_channels, channels=channels, blocks=blocks
        )
        check_bool(image_skip=image_skip)
        if image_skip and (scale != 1 or in_channels != out_channels):
            raise ValueError(
                "image_skip needs scale == 1 and in_channels == out_channels, got "
                f"scale={scale}, in_channels={in_channels}, out_channels={out_channels}"
            )
        self.arch_options: dict = {
            "size": size,
            "in_channels": in_channels,
            "out_channels": out_channels,
            "channels": channels,
            "blocks": blocks,
            "scale": scale,
            "image_skip": image_skip,
        }
        self.scale = scale
        self.image_skip = image_skip

        self.head = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.body = nn.Sequential(*(ResidualBlock(channels) for _ in range(blocks)))
        self.upsample = _make_upsampler(channels, scale)
        self.tail = nn.Conv2d(channels, out_channels, 3, padding=1)
        scaled_kaiming_init_(self.body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map an (N, in, H, W) image to an (N, out, H*scale, W*scale) image."""
        feat = self.head(x)
        feat = feat + self.body(feat)
        out = self.tail(self.upsample(feat))
        return x + out if self.image_skip else out
