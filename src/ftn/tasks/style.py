"""Continuous style transfer: the content photo is the input, the level picks the style objective.

* ``style`` — two styles: level 0 = style A, level 1 = style B (the paper's Dynamic-Net setting).
* ``style-strength`` — one style, the level is the style weight of the loss (a weak and a strong
  stylisation of the same style).

The objective is Johnson et al.'s perceptual loss as in PyTorch's ``fast_neural_style`` example:
``w_c ||relu2_2(y) - relu2_2(x)||^2 + w_s sum_l ||G_l(y) - G_l(style)||^2`` with Gram matrices
normalised by ``C H W`` over relu1_2, relu2_2, relu3_3, relu4_3 of VGG16. That example weighs
content and style 1e5 : 1e10 (a ratio of 1e5) on VGG features of unit-scale inputs; the offline
weights here take 0-255 caffe inputs, whose features are about 58x larger (255 x ImageNet's std
0.226), which multiplies the Gram term by 58^4 and the content term by 58^2: the same balance is a
ratio of 1e5 / 58^2 = 30, hence the defaults content 30, style 1e3 (Adam is blind to the common scale).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..assets import find_asset
from . import Objective, Task, check_images

STYLES_ENV = "FTN_STYLES"
"""Environment variable naming a folder of style images."""


def find_style(style: str) -> Path:
    """A style image: a path, or a name (``mosaic``) looked up in ``$FTN_STYLES`` or ``../shared/data/styles``.

    A name is looked for in one folder, found as :func:`ftn.assets.find_asset` finds assets: the
    folder in ``$FTN_STYLES`` when set, else ``data/styles`` of the shared folder beside a source checkout.
    """
    p = Path(style)
    if p.is_file():
        return p
    folder = find_asset("data/styles", env_var=STYLES_ENV, what=f"style image {style!r}",
                        option="a path to the image file", hint=f"{STYLES_ENV} names a folder of style images.")
    for candidate in sorted(folder.glob(f"{p.stem}.*")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"style image {style!r} not found in {folder}: give a path to the image file, put {p.stem}.<png|jpg> "
        f"in that folder, or point {STYLES_ENV} at a folder that holds it"
    )


def load_style(style: str, size: int | None) -> Tensor:
    """The style image as (1, 3, H, W) in [0, 1], its shorter side resized to ``size`` (None: as is)."""
    from PIL import Image

    with Image.open(find_style(style)) as im:
        im = im.convert("RGB")
        if size:
            w, h = im.size
            k = size / min(w, h)
            im = im.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.BICUBIC)
        data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(im.size[1], im.size[0], 3)
    return data.permute(2, 0, 1).unsqueeze(0).float() / 255.0


class _StyleTask(Task):
    has_reference = False

    def __init__(self, *, content_weight: float = 30.0, style_size: int | None = 256,
                 vgg_weights: str | None = None) -> None:
        self.content_weight = float(content_weight)
        self.style_size = style_size
        self.vgg_weights = vgg_weights

    def degrade(self, clean: Tensor, level: float, generator: torch.Generator | None = None) -> Tensor:
        self.check_level(level)
        return check_images(clean).to(torch.float32).clone()

    def _objective(self, style: str, style_weight: float) -> Objective:
        return StyleObjective(style, style_weight=style_weight, content_weight=self.content_weight,
                              style_size=self.style_size, vgg_weights=self.vgg_weights)


class StyleTransfer(_StyleTask):
    """Level 0 = ``styles[0]``, level 1 = ``styles[1]`` (names or paths of style images)."""

    name = "style"
    level_name = "style"
    default_levels = (0.0, 1.0)
    test_levels = (0.0, 1.0)

    def __init__(self, *, styles: tuple[str, str] | list[str] = ("mosaic", "candy"), style_weight: float = 1e3,
                 content_weight: float = 30.0, style_size: int | None = 256, vgg_weights: str | None = None) -> None:
        super().__init__(content_weight=content_weight, style_size=style_size, vgg_weights=vgg_weights)
        if len(styles) != 2:
            raise ValueError(f"style transfer between two styles needs two style images, got {len(styles)}")
        self.styles = [str(s) for s in styles]
        self.style_weight = float(style_weight)

    @property
    def options(self) -> dict[str, Any]:
        return {"styles": self.styles, "style_weight": self.style_weight, "content_weight": self.content_weight,
                "style_size": self.style_size}

    def check_level(self, level: float) -> float:
        v = super().check_level(level)
        if v not in (0.0, 1.0):
            raise ValueError(f"the style level is 0 (style {Path(self.styles[0]).stem}) or 1 "
                             f"(style {Path(self.styles[1]).stem}); got {level!r}. Use alpha for the styles between")
        return v

    def label(self, level: float) -> str:
        return f"style {Path(self.styles[int(self.check_level(level))]).stem}"

    def objective(self, level: float, *, pixel_loss: str = "l1", patch_size: int | None = None) -> Objective:
        return self._objective(self.styles[int(self.check_level(level))], self.style_weight)


class StyleStrength(_StyleTask):
    """One style; the level is its weight in the loss (default 1e2 weak, 1e3 strong)."""

    name = "style-strength"
    level_name = "style_weight"
    test_levels = ()

    def __init__(self, *, style: str = "mosaic", levels: tuple[float, float] | list[float] = (1e2, 1e3),
                 content_weight: float = 30.0, style_size: int | None = 256, vgg_weights: str | None = None) -> None:
        super().__init__(content_weight=content_weight, style_size=style_size, vgg_weights=vgg_weights)
        self.style = str(style)
        self.default_levels = (float(levels[0]), float(levels[1]))  # type: ignore[misc]

    @property
    def options(self) -> dict[str, Any]:
        return {"style": self.style, "levels": list(self.default_levels), "content_weight": self.content_weight,
                "style_size": self.style_size}

    def check_level(self, level: float) -> float:
        v = super().check_level(level)
        if v < 0:
            raise ValueError(f"style weight must be >= 0, got {level!r}")
        return v

    def label(self, level: float) -> str:
        return f"{Path(self.style).stem} x{self.check_level(level):g}"

    def objective(self, level: float, *, pixel_loss: str = "l1", patch_size: int | None = None) -> Objective:
        return self._objective(self.style, self.check_level(level))


class StyleObjective(Objective):
    """Content (relu2_2, MSE) + Gram style loss of one style image, on frozen VGG16 features."""

    def __init__(self, style: str, *, style_weight: float, content_weight: float, style_size: int | None,
                 vgg_weights: str | None) -> None:
        super().__init__()
        from ..losses import ContentLoss, StyleLoss, VGG16Features, find_vgg_weights

        vgg = VGG16Features.load(find_vgg_weights(vgg_weights))
        self.vgg = vgg
        self.content = ContentLoss(vgg)
        self.style = StyleLoss(vgg, load_style(style, style_size))
        self.style_weight, self.content_weight = style_weight, content_weight

    def forward(self, output: Tensor, target: Tensor) -> tuple[Tensor, dict[str, float]]:
        # one VGG pass over the output feeds both losses
        features = self.vgg(output, sorted(set(self.content.layers) | set(self.style.layers)))
        with torch.no_grad():
            target_features = self.vgg(target, list(self.content.layers))
        content = self.content.from_features(features, target_features)
        style = self.style.from_features(features)
        loss = self.content_weight * content + self.style_weight * style
        return loss, {"content": content.item(), "style": style.item()}
