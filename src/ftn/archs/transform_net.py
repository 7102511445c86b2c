"""Image transformation network for fast style transfer (Johnson et al., "Perceptual Losses for
Real-Time Style Transfer and Super-Resolution", ECCV 2016), with instance normalisation
(Ulyanov et al. 2016), as in PyTorch's ``examples/fast_neural_style`` and Dynamic-Net.

Module names follow the PyTorch example (``conv1.conv2d``, ``in1``, ``res1.conv1.conv2d``,
``deconv1.conv2d``, ...) so its published ``.pth`` style models load into the ``full`` size
(after dropping their legacy ``running_mean``/``running_var`` keys, as the example itself does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import check_positive_ints, check_size, pad_to_multiple

__all__ = ["TransformNet", "ConvLayer", "UpsampleConvLayer", "TransformResidualBlock"]


class ConvLayer(nn.Module):
    """Reflection padding (``kernel // 2``) then a conv, so borders are not darkened by zeros."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1
    ) -> None:
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the padded conv."""
        return self.conv2d(self.reflection_pad(x))


class UpsampleConvLayer(nn.Module):
    """Nearest-neighbour x``upsample`` then a reflection-padded conv.

    Used instead of a transposed conv because it avoids checkerboard artefacts.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, upsample: int = 2
    ) -> None:
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample and apply the padded conv."""
        x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")
        return self.conv2d(self.reflection_pad(x))


class TransformResidualBlock(nn.Module):
    """``x + IN(conv(ReLU(IN(conv(x)))))`` with reflection-padded 3x3 convs."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, 3)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return x + self.in2(self.conv2(self.relu(self.in1(self.conv1(x)))))


class TransformNet(nn.Module):
    """Johnson et al.'s transformation network with instance norm.

    Layout with base channels B (B = 32 for ``full``)::

        conv1, in1       9x9 in -> B, ReLU
        conv2, in2       3x3 stride 2, B -> 2B, ReLU
        conv3, in3       3x3 stride 2, 2B -> 4B, ReLU
        res1 .. resN     residual blocks at 4B
        deconv1, in4     nearest x2, 3x3 4B -> 2B, ReLU
        deconv2, in5     nearest x2, 3x3 2B -> B, ReLU
        deconv3          9x9 B -> out (no norm, no activation, not clamped)

    Any H, W works: the input is reflect-padded to a multiple of 4 (and to at least 8, so the
    reflection pads and instance norms at 1/4 resolution have enough pixels) and the output is
    cropped back to H, W.

    Args:
        size: ``"full"`` (B = 32, 5 residual blocks: 1,679,235 parameters) or ``"mini"``
            (B = 16, 3 residual blocks).
        in_channels: Input image channels.
        out_channels: Output image channels.
        channels: Base channels B; overrides the size preset.
        blocks: Number of residual blocks; overrides the size preset.
    """

    arch_name: str = "transform_net"
    #: Qualified names of the residual blocks (``re.fullmatch`` on ``named_modules()``).
    block_pattern: str = r"res\d+"

    _PRESETS: dict[str, dict[str, int]] = {
        "full": {"channels": 32, "blocks": 5},
        "mini": {"channels": 16, "blocks": 3},
    }

    def __init__(
        self,
        size: str = "full",
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        channels: int | None = None,
        blocks: int | None = None,
    ) -> None:
        super().__init__()
        check_size(size)
        preset = self._PRESETS[size]
        channels = preset["channels"] if channels is None else channels
        blocks = preset["blocks"] if blocks is None else blocks
        check_positive_ints(
            in_channels=in_channels, out_channels=out_channels, channels=channels, blocks=blocks
        )
        self.arch_options: dict = {
            "size": size,
            "in_channels": in_channels,
            "out_channels": out_channels,
            "channels": channels,
            "blocks": blocks,
        }
        b = channels
        self.conv1 = ConvLayer(in_channels, b, 9)
        self.in1 = nn.InstanceNorm2d(b, affine=True)
        self.conv2 = ConvLayer(b, 2 * b, 3, stride=2)
        self.in2 = nn.InstanceNorm2d(2 * b, affine=True)
        self.conv3 = ConvLayer(2 * b, 4 * b, 3, stride=2)
        self.in3 = nn.InstanceNorm2d(4 * b, affine=True)
        # res1..resN as separate attributes (not a list) to keep the PyTorch example's key names.
        self.num_blocks = blocks
        for i in range(1, blocks + 1):
            self.add_module(f"res{i}", TransformResidualBlock(4 * b))
        self.deconv1 = UpsampleConvLayer(4 * b, 2 * b, 3, upsample=2)
        self.in4 = nn.InstanceNorm2d(2 * b, affine=True)
        self.deconv2 = UpsampleConvLayer(2 * b, b, 3, upsample=2)
        self.in5 = nn.InstanceNorm2d(b, affine=True)
        self.deconv3 = ConvLayer(b, out_channels, 9)
        self.relu = nn.ReLU()

    def residual_blocks(self) -> list[TransformResidualBlock]:
        """The residual blocks in forward order."""
        return [getattr(self, f"res{i}") for i in range(1, self.num_blocks + 1)]

    @property
    def size_multiple(self) -> int:
        """Tiles must start at multiples of this (two stride-2 convs)."""
        return 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map an (N, in, H, W) image to an (N, out, H, W) image."""
        h, w = x.shape[-2:]
        y = pad_to_multiple(x, 4, minimum=8)
        y = self.relu(self.in1(self.conv1(y)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        for block in self.residual_blocks():
            y = block(y)
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        y = self.deconv3(y)
        return y[..., :h, :w]
