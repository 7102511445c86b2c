"""Feature losses on a frozen VGG: perceptual (ESRGAN), style and content (fast neural style), TV.

* :class:`PerceptualLoss` - ESRGAN's content loss: L1 between VGG features of the output and the
  target taken *before* the activation of the last convolution (``conv5_4`` of VGG19 in ESRGAN;
  ``conv5_3`` is the VGG16 analogue and the default for a VGG16).
* :class:`StyleLoss` - fast neural style's style loss: MSE between Gram matrices (normalised by
  C*H*W) of the batch and of one style image, at ``relu1_2``, ``relu2_2``, ``relu3_3``, ``relu4_3``.
  The style Grams are computed once, at the style image's own size.
* :class:`ContentLoss` - fast neural style's content loss: MSE of ``relu2_2`` features.
* :func:`total_variation` - optional smoothness term.

Every loss takes RGB images in [0, 1]; the VGG applies its weights' input convention itself. To run
the VGG once for several losses, call it with the union of their ``layers`` and pass the features to
each loss's ``from_features``.

Feature magnitudes depend on the weights' input convention (Caffe 0-255 weights give much larger
features than torchvision's normalised ones), so loss weights must be chosen for the VGG in use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .vgg import VGGFeatures

__all__ = ["PerceptualLoss", "StyleLoss", "ContentLoss", "gram_matrix", "total_variation"]

_CRITERIA = {"l1": F.l1_loss, "l2": F.mse_loss, "mse": F.mse_loss}


def _layer_weights(layers: Mapping[str, float] | Iterable[str]) -> dict[str, float]:
    """``{name: weight}`` from a mapping, or weight 1 for each name of an iterable."""
    if isinstance(layers, str):
        layers = (layers,)
    if isinstance(layers, Mapping):
        weights = {str(k): float(v) for k, v in layers.items()}
    else:
        weights = {str(k): 1.0 for k in layers}
    if not weights:
        raise ValueError("at least one layer is needed")
    return weights


def gram_matrix(features: Tensor) -> Tensor:
    """Gram matrices of (B, C, H, W) features, normalised by C*H*W: (B, C, C).

    ``G[b, i, j] = sum_{h,w} F[b, i, h, w] F[b, j, h, w] / (C H W)``, as in fast neural style.
    """
    if features.dim() != 4:
        raise ValueError(f"expected (B, C, H, W) features, got shape {tuple(features.shape)}")
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def total_variation(x: Tensor) -> Tensor:
    """Anisotropic L1 total variation of (B, C, H, W) images: mean |vertical| + mean |horizontal| difference."""
    if x.dim() != 4:
        raise ValueError(f"expected (B, C, H, W) images, got shape {tuple(x.shape)}")
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    return dy + dx


class PerceptualLoss(nn.Module):
    """ESRGAN-style perceptual loss: weighted distance of VGG features of output and target.

    Args:
        vgg: a frozen :class:`~ftn.losses.vgg.VGGFeatures` (shared with other losses if wanted).
        layers: ``{layer name: weight}`` (or names, weight 1 each). Default: the last convolution
            before its activation (``conv5_3`` for VGG16, ``conv5_4`` for VGG19), weight 1.
        criterion: ``"l1"`` (ESRGAN) or ``"l2"``/``"mse"``; mean over elements.

    ``loss(output, target)`` -> scalar; target features are computed without gradients.
    """

    def __init__(self, vgg: VGGFeatures, layers: Mapping[str, float] | Iterable[str] | None = None,
                 criterion: str = "l1") -> None:
        super().__init__()
        if criterion not in _CRITERIA:
            raise ValueError(f"criterion must be one of {sorted(_CRITERIA)}, got {criterion!r}")
        if layers is None:
            last_conv = [n for n in vgg.index if n.startswith("conv")][-1]
            layers = {last_conv: 1.0}
        self.vgg = vgg
        self.weights = _layer_weights(layers)
        vgg.check_layers(self.weights)
        self.criterion = criterion
        self._fn = _CRITERIA[criterion]

    @property
    def layers(self) -> tuple[str, ...]:
        """The VGG layers this loss reads."""
        return tuple(self.weights)

    def from_features(self, output_features: Mapping[str, Tensor], target_features: Mapping[str, Tensor]) -> Tensor:
        """The loss from precomputed features (target features are detached here)."""
        total: Tensor | None = None
        for name, w in self.weights.items():
            term = w * self._fn(output_features[name], target_features[name].detach())
            total = term if total is None else total + term
        assert total is not None
        return total

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        """Perceptual distance between ``output`` and ``target`` (RGB, [0, 1], (B, 3, H, W))."""
        with torch.no_grad():
            target_features = self.vgg(target, self.layers)
        return self.from_features(self.vgg(output, self.layers), target_features)


class StyleLoss(nn.Module):
    """Fast-neural-style style loss: MSE between the batch's Grams and one style image's Grams.

    Args:
        vgg: a frozen :class:`~ftn.losses.vgg.VGGFeatures`.
        style_image: the style, RGB in [0, 1], (3, H, W) or (1, 3, H, W). Its Grams are computed once
            at its own size (they do not depend on the size of the images compared to it, because
            Grams are normalised by C*H*W).
        layers: names (weight 1 each) or ``{name: weight}``; default fast neural style's four.
        weight: overall factor (fast neural style uses 1e10 with torchvision-convention weights;
            Caffe-convention weights need a far smaller one).

    ``loss(images)`` -> ``weight * sum_l w_l * mean((G_l(images) - G_l(style))^2)``.
    """

    def __init__(self, vgg: VGGFeatures, style_image: Tensor,
                 layers: Mapping[str, float] | Iterable[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
                 weight: float = 1.0) -> None:
        super().__init__()
        self.vgg = vgg
        self.weights = _layer_weights(layers)
        vgg.check_layers(self.weights)
        self.weight = float(weight)
        if style_image.dim() == 3:
            style_image = style_image.unsqueeze(0)
        if style_image.dim() != 4 or style_image.shape[0] != 1:
            raise ValueError(f"style_image must be (3, H, W) or (1, 3, H, W), got shape {tuple(style_image.shape)}")
        param = next(vgg.parameters(), None)
        if param is not None:
            style_image = style_image.to(device=param.device, dtype=param.dtype)
        with torch.no_grad():
            features = vgg(style_image, self.layers)
        for i, name in enumerate(self.layers):
            self.register_buffer(f"_gram{i}", gram_matrix(features[name]), persistent=False)

    @property
    def layers(self) -> tuple[str, ...]:
        """The VGG layers this loss reads."""
        return tuple(self.weights)

    def style_grams(self) -> dict[str, Tensor]:
        """The style image's Gram matrices, (1, C, C) per layer."""
        return {name: getattr(self, f"_gram{i}") for i, name in enumerate(self.layers)}

    def from_features(self, features: Mapping[str, Tensor]) -> Tensor:
        """The loss from precomputed features of the images."""
        total: Tensor | None = None
        for name, style in self.style_grams().items():
            gram = gram_matrix(features[name])
            term = self.weights[name] * F.mse_loss(gram, style.to(gram.dtype).expand_as(gram))
            total = term if total is None else total + term
        assert total is not None
        return self.weight * total

    def forward(self, images: Tensor) -> Tensor:
        """Style distance of ``images`` (RGB, [0, 1], (B, 3, H, W)) to the style image."""
        return self.from_features(self.vgg(images, self.layers))


class ContentLoss(nn.Module):
    """Fast-neural-style content loss: ``weight * MSE`` of VGG features (``relu2_2``) of output and content.

    ``loss(output, content)`` -> scalar; content features are computed without gradients.
    """

    def __init__(self, vgg: VGGFeatures, layer: str = "relu2_2", weight: float = 1.0) -> None:
        super().__init__()
        self.vgg = vgg
        vgg.check_layers((layer,))
        self.layer = layer
        self.weight = float(weight)

    @property
    def layers(self) -> tuple[str, ...]:
        """The VGG layers this loss reads."""
        return (self.layer,)

    def from_features(self, output_features: Mapping[str, Tensor], content_features: Mapping[str, Tensor]) -> Tensor:
        """The loss from precomputed features (content features are detached here)."""
        return self.weight * F.mse_loss(output_features[self.layer], content_features[self.layer].detach())

    def forward(self, output: Tensor, content: Tensor) -> Tensor:
        """Content distance between ``output`` and ``content`` (RGB, [0, 1], (B, 3, H, W))."""
        with torch.no_grad():
            content_features = self.vgg(content, self.layers)
        return self.from_features(self.vgg(output, self.layers), content_features)
