"""Helpers shared by the architectures: size presets, option checks, padding, init, the residual block."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LIMITS",
    "ResidualBlock",
    "SIZES",
    "check_bool",
    "check_size",
    "check_positive_ints",
    "pad_to_multiple",
    "scaled_kaiming_init_",
]

#: The size presets every architecture of ``ftn.archs`` understands.
SIZES: tuple[str, ...] = ("full", "mini")


def check_size(size: str) -> None:
    """Raise ``ValueError`` unless ``size`` is one of :data:`SIZES`."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {list(SIZES)}, got {_short(size)}")


#: The largest value each size option may take: far above any published network (ESRGAN: 64
#: channels, 23 blocks; DnCNN-B: depth 20), far below what would exhaust memory. A model file's
#: metadata chooses these numbers, so they are checked before anything is built.
LIMITS: dict[str, int] = {
    "in_channels": 64,
    "out_channels": 64,
    "channels": 2048,
    "growth": 2048,
    "blocks": 256,
    "depth": 256,
    "scales": 6,
}


def check_positive_ints(**values: int) -> None:
    """Raise ``ValueError`` naming the first option that is not a positive ``int`` within :data:`LIMITS`."""
    for name, value in values.items():
        # bool is an int subclass; reject it so a misplaced flag is not read as 1 channel.
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {_short(value)}")
        if value > LIMITS.get(name, value):
            raise ValueError(f"{name} must be at most {LIMITS[name]}, got {value}")


def _short(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: option values come from files and must not flood a message."""
    text = repr(value) if not isinstance(value, (list, dict)) else type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_bool(**values: bool) -> None:
    """Raise ``ValueError`` naming the first option that is not a ``bool``."""
    for name, value in values.items():
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a bool, got {_short(value)}")


def pad_to_multiple(x: torch.Tensor, multiple: int, minimum: int = 1) -> torch.Tensor:
    """Pad the bottom/right of ``x`` (N, C, H, W) so H and W are multiples of ``multiple``
    and at least ``minimum``.

    Reflection padding is used because it adds no artificial edge; it needs the pad to be
    smaller than the side, so tiny inputs fall back to replicate padding. Callers crop the
    output back to the original size, so the padded rows/columns never reach the user.
    """
    h, w = x.shape[-2:]
    target_h = max(h + (-h) % multiple, minimum + (-minimum) % multiple)
    target_w = max(w + (-w) % multiple, minimum + (-minimum) % multiple)
    pad_h, pad_w = target_h - h, target_w - w
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


@torch.no_grad()
def scaled_kaiming_init_(modules: Iterable[nn.Module], scale: float = 0.1) -> None:
    """Kaiming-normal init scaled by ``scale`` (biases zeroed) for every conv in ``modules``.

    Down-scaling the convs inside residual branches keeps each block close to the identity at
    the start, which is how ESRGAN/EDSR-style deep residual stacks are made to train stably.
    """
    for module in modules:
        for conv in module.modules():
            # a meta build (ftn.io checks a file's shapes on it) has no values to set, and normal_ on
            # a meta tensor imports torch._dynamo: seconds of CPU per model load
            if isinstance(conv, nn.Conv2d) and not conv.weight.is_meta:
                nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
                conv.weight.mul_(scale)
                if conv.bias is not None:
                    conv.bias.zero_()


class ResidualBlock(nn.Module):
    """``x + conv2(relu(conv1(x)))`` with 3x3 convs (with bias) and no normalisation."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return x + self.conv2(self.relu(self.conv1(x)))
