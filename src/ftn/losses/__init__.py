"""Losses of the perceptual tasks: VGG features, perceptual/style/content losses, ESRGAN's GAN.

Not imported by ``import ftn`` (it stays light); the tasks that need these import them when their
objective is built::

    from ftn.losses import VGG16Features, PerceptualLoss, find_vgg_weights
    vgg = VGG16Features.load(find_vgg_weights(), layers=["conv5_3"])
    loss = PerceptualLoss(vgg)(output, target)

Depends on torch and safetensors only. No weights are downloaded: see :func:`find_vgg_weights`.
"""

from __future__ import annotations

from .gan import VGGStyleDiscriminator, discriminator_loss, generator_loss, relativistic_gan_losses
from .perceptual import ContentLoss, PerceptualLoss, StyleLoss, gram_matrix, total_variation
from .vgg import (
    CONVENTIONS,
    ENV_VAR,
    VGG16Features,
    VGGFeatures,
    canonical_convention,
    find_vgg_weights,
    layer_indices,
)

__all__ = [
    "CONVENTIONS",
    "ENV_VAR",
    "ContentLoss",
    "PerceptualLoss",
    "StyleLoss",
    "VGG16Features",
    "VGGFeatures",
    "VGGStyleDiscriminator",
    "canonical_convention",
    "discriminator_loss",
    "find_vgg_weights",
    "generator_loss",
    "gram_matrix",
    "layer_indices",
    "relativistic_gan_losses",
    "total_variation",
]
