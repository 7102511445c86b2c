"""ESRGAN's adversary: the VGG-style discriminator and the relativistic average GAN losses.

The discriminator follows ESRGAN's ``VGG128`` (BasicSR's ``VGGStyleDiscriminator128``): five stages,
each a 3x3 conv (stride 1) and a 4x4 conv (stride 2), with BatchNorm (except on the very first conv,
which has a bias instead) and LeakyReLU(0.2); channels 64, 128, 256, 512, 512; then
``Linear(512*4*4, 100)``, LeakyReLU(0.2), ``Linear(100, 1)``. Layer names match BasicSR's
(``conv0_0``, ``conv0_1``, ``bn0_1``, ..., ``linear1``, ``linear2``), so its checkpoints load as-is.
With 64 base channels and 128x128 input it has 14,499,401 parameters.

Relativistic average GAN (ESRGAN, Eq. 1-2), with ``D_Ra(a, b) = a - mean(b)`` on logits and binary
cross-entropy with logits::

    discriminator:  BCE(real - mean(fake), 1) and BCE(fake - mean(real), 0), averaged
    generator:      BCE(real - mean(fake), 0) and BCE(fake - mean(real), 1), averaged

Typical training step::

    fake = generator(lr)
    # generator step: the discriminator's view of the real images carries no gradient
    g_adv = generator_loss(disc(hr), disc(fake))           # real logits are detached inside
    # discriminator step: the generator's output must be detached by the caller
    d_loss = discriminator_loss(disc(hr), disc(fake.detach()))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "VGGStyleDiscriminator",
    "discriminator_loss",
    "generator_loss",
    "relativistic_gan_losses",
]

_SIZES = {"full": 64, "mini": 32}


class VGGStyleDiscriminator(nn.Module):
    """ESRGAN's VGG-style discriminator; images (B, C, S, S) -> one logit per image, (B, 1).

    Args:
        in_channels: channels of the images.
        base_channels: channels of the first stage (the stages use 1, 2, 4, 8, 8 times it). Default:
            64 for ``size="full"`` (ESRGAN), 32 for ``size="mini"`` (for CPU training).
        input_size: side S of the (square) input; 128 in ESRGAN, any multiple of 32 accepted. Five
            stride-2 stages bring it to S/32 (4 for 128), which sets the first linear layer's width.
        size: ``"full"`` or ``"mini"``; only picks the default of ``base_channels``.
    """

    def __init__(self, in_channels: int = 3, base_channels: int | None = None, input_size: int = 128,
                 size: str = "full") -> None:
        super().__init__()
        if size not in _SIZES:
            raise ValueError(f"size must be one of {list(_SIZES)}, got {size!r}")
        if base_channels is None:
            base_channels = _SIZES[size]
        for name, value in (("in_channels", in_channels), ("base_channels", base_channels), ("input_size", input_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if input_size % 32:
            raise ValueError(f"input_size must be a multiple of 32 (five stride-2 stages), got {input_size}")
        self.in_channels = in_channels
        self.base_channels = base_channels
        self.input_size = input_size
        self.size = size

        nf = base_channels
        widths = [nf, 2 * nf, 4 * nf, 8 * nf, 8 * nf]
        previous = in_channels
        for stage, width in enumerate(widths):
            # First conv of each stage: 3x3, stride 1. Stage 0 has a bias and no BatchNorm.
            first = nn.Conv2d(previous, width, 3, 1, 1, bias=stage == 0)
            self.add_module(f"conv{stage}_0", first)
            if stage > 0:
                self.add_module(f"bn{stage}_0", nn.BatchNorm2d(width, affine=True))
            # Second conv: 4x4, stride 2 (halves the side), followed by BatchNorm.
            self.add_module(f"conv{stage}_1", nn.Conv2d(width, width, 4, 2, 1, bias=False))
            self.add_module(f"bn{stage}_1", nn.BatchNorm2d(width, affine=True))
            previous = width
        self.stages = len(widths)
        self.final_size = input_size // 2 ** self.stages
        self.linear1 = nn.Linear(widths[-1] * self.final_size ** 2, 100)
        self.linear2 = nn.Linear(100, 1)
        self.act = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, 1) of images ``x`` (B, in_channels, input_size, input_size)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels or x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"expected (B, {self.in_channels}, {self.input_size}, {self.input_size}) images, "
                             f"got shape {tuple(x.shape)}")
        h = self.act(self.conv0_0(x))
        h = self.act(self.bn0_1(self.conv0_1(h)))
        for stage in range(1, self.stages):
            h = self.act(getattr(self, f"bn{stage}_0")(getattr(self, f"conv{stage}_0")(h)))
            h = self.act(getattr(self, f"bn{stage}_1")(getattr(self, f"conv{stage}_1")(h)))
        h = self.act(self.linear1(h.flatten(1)))
        return self.linear2(h)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, base_channels={self.base_channels}, input_size={self.input_size}"


def _bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def generator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Relativistic average GAN loss of the generator.

    ``0.5 * [BCE(real - mean(fake), 0) + BCE(fake - mean(real), 1)]``. ``real_logits`` (the
    discriminator on real images) are detached here, so gradients reach only ``fake_logits`` and,
    through them, the generator. (The discriminator's parameters still receive gradients through
    ``fake_logits``; the caller zeroes them before the discriminator's own step, as usual.)
    """
    real = real_logits.detach()
    return 0.5 * (_bce(real - fake_logits.mean(), 0.0) + _bce(fake_logits - real.mean(), 1.0))


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor, *, detach_means: bool = False) -> Tensor:
    """Relativistic average GAN loss of the discriminator.

    ``0.5 * [BCE(real - mean(fake), 1) + BCE(fake - mean(real), 0)]``. ``fake_logits`` must come from
    the discriminator on *detached* generator output (``disc(fake.detach())``), otherwise this loss
    back-propagates into the generator. By default the gradient is the exact gradient of this
    expression (as in the original ESRGAN code); ``detach_means=True`` treats ``mean(fake)`` and
    ``mean(real)`` as constants, as BasicSR's ESRGAN model does (it back-propagates the two halves
    separately to save memory).
    """
    mean_fake = fake_logits.mean()
    mean_real = real_logits.mean()
    if detach_means:
        mean_fake, mean_real = mean_fake.detach(), mean_real.detach()
    return 0.5 * (_bce(real_logits - mean_fake, 1.0) + _bce(fake_logits - mean_real, 0.0))


def relativistic_gan_losses(real_logits: Tensor, fake_logits: Tensor) -> tuple[Tensor, Tensor]:
    """``(generator_loss(real, fake), discriminator_loss(real, fake))`` of the same logits.

    Convenient for logging and tests. For training, compute each from its own forward pass (see the
    module docstring): the discriminator's loss needs logits of the *detached* generator output.
    """
    return generator_loss(real_logits, fake_logits), discriminator_loss(real_logits, fake_logits)
