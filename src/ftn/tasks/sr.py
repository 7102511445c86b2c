"""Perception-distortion controllable super-resolution (level = perception weight in [0, 1]).

The input is the clean image down-sampled by MATLAB's bicubic ``imresize`` (with antialiasing), at
every level; what changes with the level is the objective:

* level 0 — ``L1``: the PSNR-oriented network (ESRGAN's "RRDB_PSNR" stage);
* level 1 — ESRGAN's perceptual objective ``w_pix L1 + w_vgg ||VGG(y) - VGG(x)||_1 + w_gan L_G^Ra``
  with ESRGAN's ``w_pix = 1e-2`` and ``w_gan = 5e-3`` and a VGG-style discriminator trained alongside by
  the relativistic average GAN loss. ESRGAN's ``w_vgg = 1`` belongs to its VGG19 with unit-scale inputs;
  the offline weights here are VGG16 with 0-255 caffe inputs, whose features have another scale, so
  ``w_vgg`` is calibrated on the terms' magnitudes instead: published ESRGAN logs show the weighted
  perceptual term near 0.8-1.0 and about 10-20x the weighted GAN term at the start of the GAN stage;
  our conv5_3 term starts near 19 on an L1-trained x4 network, hence ``w_vgg = 1/20``. (A first
  calibration, 1/58 from the input scale alone, left the GAN term a third of the perceptual one; the
  tuners then learnt a dot-grid artefact and NIQE rose with alpha: ``docs/investigation.md``.)
* a level ``p`` in between — ``(1 - p) L1 + p (level-1 objective)`` (only 0 and 1 are trained).

ESRGAN takes VGG19's conv5_4 before its ReLU; the weights available offline here are VGG16's, so the
default layer is VGG16's last conv, ``conv5_3``, before its ReLU (say ``perceptual_layer`` to change).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from . import Objective, Task, check_images


class SuperResolution(Task):
    """Bicubic x``scale`` super-resolution whose level moves from distortion (L1) to perception (GAN)."""

    name = "sr"
    level_name = "perception"
    default_levels = (0.0, 1.0)
    test_levels = (0.0, 1.0)
    has_reference = True

    def __init__(self, *, scale: int = 4, pixel_weight: float = 1e-2, perceptual_weight: float = 1 / 20,
                 gan_weight: float = 5e-3, perceptual_layer: str = "conv5_3", vgg_weights: str | None = None,
                 discriminator: str = "full", discriminator_lr: float = 1e-4) -> None:
        if int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        if discriminator not in ("full", "mini"):
            raise ValueError(f"discriminator must be 'full' or 'mini', got {discriminator!r}")
        self.scale = int(scale)
        self.pixel_weight = float(pixel_weight)
        self.perceptual_weight = float(perceptual_weight)
        self.gan_weight = float(gan_weight)
        self.perceptual_layer = perceptual_layer
        self.vgg_weights = vgg_weights
        self.discriminator = discriminator
        self.discriminator_lr = float(discriminator_lr)

    @property
    def options(self) -> dict[str, Any]:
        defaults = SuperResolution()
        # vgg_weights is where this machine keeps a file, not part of what the task is
        return {k: getattr(self, k) for k in ("scale", "pixel_weight", "perceptual_weight", "gan_weight",
                                             "perceptual_layer", "discriminator", "discriminator_lr")
                if getattr(self, k) != getattr(defaults, k)}

    def check_level(self, level: float) -> float:
        p = super().check_level(level)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"perception level must be in [0, 1] (0 = L1, 1 = L1 + VGG + GAN), got {level!r}")
        return p

    def label(self, level: float) -> str:
        p = self.check_level(level)
        return {0.0: "L1 (distortion)", 1.0: "L1+VGG+GAN (perception)"}.get(p, f"perception {p:g}")

    def degrade(self, clean: Tensor, level: float, generator: torch.Generator | None = None) -> Tensor:
        from ..imageops import imresize  # lazy: ftn.tasks imports torch only (imageops needs numpy)

        self.check_level(level)
        x = self.prepare(check_images(clean).to(torch.float32))
        return imresize(x, 1.0 / self.scale, antialiasing=True)

    def objective(self, level: float, *, pixel_loss: str = "l1", patch_size: int | None = None) -> Objective:
        p = self.check_level(level)
        if p == 0.0:
            return super().objective(level, pixel_loss=pixel_loss)
        return PerceptualGANObjective(self, p, pixel_loss, patch_size=patch_size or 128)


class PerceptualGANObjective(Objective):
    """``(1 - p) L1 + p (w_pix L1 + w_vgg L_vgg + w_gan L_G^Ra)``, training its discriminator in ``update``."""

    def __init__(self, task: SuperResolution, perception: float, pixel_loss: str = "l1", *, patch_size: int = 128) -> None:
        super().__init__()
        from ..losses import PerceptualLoss, VGG16Features, VGGStyleDiscriminator, find_vgg_weights

        if pixel_loss not in ("l1", "l2"):
            raise ValueError(f"pixel loss must be 'l1' or 'l2', got {pixel_loss!r}")
        self.p, self.task, self.pixel_loss = perception, task, pixel_loss
        vgg = VGG16Features.load(find_vgg_weights(task.vgg_weights))
        self.perceptual = PerceptualLoss(vgg, layers={task.perceptual_layer: 1.0}, criterion="l1")
        if patch_size % 32:
            raise ValueError(f"the GAN discriminator needs patches of a multiple of 32 pixels, got {patch_size}")
        self.discriminator = VGGStyleDiscriminator(size=task.discriminator, input_size=patch_size)
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=task.discriminator_lr, betas=(0.9, 0.99))

    def _pixel(self, output: Tensor, target: Tensor) -> Tensor:
        f = nn.functional.l1_loss if self.pixel_loss == "l1" else nn.functional.mse_loss
        return f(output, target)

    def forward(self, output: Tensor, target: Tensor) -> tuple[Tensor, dict[str, float]]:
        from ..losses import generator_loss

        t = self.task
        pixel = self._pixel(output, target)
        perceptual = self.perceptual(output, target)
        for q in self.discriminator.parameters():  # the generator's step must not train D
            q.requires_grad_(False)
        gan = generator_loss(self.discriminator(target).detach(), self.discriminator(output))
        for q in self.discriminator.parameters():
            q.requires_grad_(True)
        level2 = t.pixel_weight * pixel + t.perceptual_weight * perceptual + t.gan_weight * gan
        loss = (1.0 - self.p) * pixel + self.p * level2
        return loss, {"pixel": pixel.item(), "perceptual": perceptual.item(), "gan_g": gan.item()}

    def update(self, output: Tensor, target: Tensor) -> dict[str, float]:
        from ..losses import discriminator_loss

        self.discriminator.train()
        loss = discriminator_loss(self.discriminator(target), self.discriminator(output.detach()))
        self.d_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # each process saw its slice of the batch: average D's gradients as DDP does for the network
            world = torch.distributed.get_world_size()
            for q in self.discriminator.parameters():
                if q.grad is not None:
                    torch.distributed.all_reduce(q.grad)
                    q.grad /= world
        self.d_optimizer.step()
        return {"gan_d": loss.item()}

    def checkpoint_state(self) -> dict[str, Any]:
        return {"discriminator": self.discriminator.state_dict(), "d_optimizer": self.d_optimizer.state_dict()}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
