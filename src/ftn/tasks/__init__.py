"""Tasks: what a network learns at a *level* — a degradation, an objective, or both.

A :class:`Task` turns a clean image into the network's input at a level (``degrade``) and gives the
loss that training minimises at that level (``objective``), in the task's own unit (``level_name``):

* ``denoise``: Gaussian noise of standard deviation ``sigma`` (0-255 scale); pixel loss.
* ``dejpeg``: JPEG compression at ``quality``; pixel loss.
* ``restore``: noise, 8 bits, then JPEG, at a setting ``{"sigma": s, "quality": q}`` (two axes); pixel loss.
* ``sr``: bicubic x``scale`` down-sampling (the same at every level); the level is the
  *perception* weight: 0 = L1 (a PSNR-oriented network), 1 = ESRGAN's L1 + VGG + GAN objective.
* ``style``: the content photo itself is the input; level 0 = style A, 1 = style B.
* ``style-strength``: one style; the level is the style weight of the loss.

``default_levels`` are level 1 (alpha = 0, the base network) and level 2 (alpha = 1, the tuner's
target); ``test_levels`` are the levels the paper evaluates.

    task = get_task("dejpeg", y_only=True)
    noisy = task.degrade(clean, 10)          # clean: (C, H, W) or (B, C, H, W) float in [0, 1]
    task.label(10)                           # "quality 10"
    loss_fn = task.objective(10)             # an Objective: loss_fn(output, clean) -> (loss, parts)

This package imports torch only; the JPEG task imports Pillow when it runs, the perceptual tasks
import :mod:`ftn.losses` (and read VGG weights) when their objective is built.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

__all__ = ["TASKS", "Task", "get_task", "Objective", "PixelObjective", "Denoise", "DeJPEG", "Restore",
           "SuperResolution", "StyleTransfer", "StyleStrength"]


class Objective(nn.Module):
    """What one training step minimises at one level.

    ``objective(output, target)`` returns ``(loss, parts)``: the loss the network's step
    back-propagates and a dict of its named parts as floats (logged). An objective with an adversary
    (a GAN discriminator) trains it in :meth:`update`, called after each network step, and saves it
    with :meth:`checkpoint_state`; frozen helpers (a VGG) are not part of that state.
    """

    def forward(self, output: Tensor, target: Tensor) -> tuple[Tensor, dict[str, float]]:  # pragma: no cover
        raise NotImplementedError

    def update(self, output: Tensor, target: Tensor) -> dict[str, float]:
        """One step of any adversary on this batch (``output`` detached); returns logged parts."""
        return {}

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything :meth:`update` learns, to resume exactly (tensors and JSON-ready values)."""
        return {}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`checkpoint_state` returned."""


class PixelObjective(Objective):
    """``L1`` or ``L2`` between output and target: the restoration tasks' loss at every level."""

    def __init__(self, kind: str = "l1") -> None:
        super().__init__()
        if kind not in ("l1", "l2"):
            raise ValueError(f"pixel loss must be 'l1' or 'l2', got {kind!r}")
        self.kind = kind

    def forward(self, output: Tensor, target: Tensor) -> tuple[Tensor, dict[str, float]]:
        loss = nn.functional.l1_loss(output, target) if self.kind == "l1" else nn.functional.mse_loss(output, target)
        return loss, {}


class Task:
    """A degradation with a level. Subclasses set the class attributes and :meth:`degrade`."""

    name: ClassVar[str] = ""
    """Registry key: ``"denoise"`` or ``"dejpeg"``."""
    level_name: ClassVar[str] = ""
    """Unit of the level: ``"sigma"`` or ``"quality"``."""
    default_levels: ClassVar[tuple[float, float]] = (0.0, 0.0)
    """(level 1, level 2) of the paper: what alpha = 0 and alpha = 1 stand for."""
    test_levels: ClassVar[tuple[float, ...]] = ()
    """The levels the paper evaluates."""
    scale: int = 1
    """Output size / input size of the network (4 for x4 super-resolution)."""
    has_reference: ClassVar[bool] = True
    """Whether the clean image is the right answer (PSNR makes sense); not for style transfer."""

    def degrade(
        self, clean: torch.Tensor, level: float, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Degrade ``clean`` ((C, H, W) or (B, C, H, W), float in [0, 1]) at ``level``.

        Returns a float32 tensor of the same shape on the same device. ``generator`` drives any
        randomness (the global generator when ``None``).
        """
        raise NotImplementedError

    def objective(self, level: float, *, pixel_loss: str = "l1", patch_size: int | None = None) -> Objective:
        """The loss of a training step at ``level`` (restoration: the pixel loss at every level).

        ``patch_size`` is the side of the training patches (a GAN discriminator is built for it).
        """
        self.check_level(level)
        return PixelObjective(pixel_loss)

    def prepare(self, clean: torch.Tensor) -> torch.Tensor:
        """The clean image as the task needs it (super-resolution crops to a multiple of the scale)."""
        if self.scale == 1:
            return clean
        h, w = clean.shape[-2:]
        return clean[..., : h - h % self.scale, : w - w % self.scale]

    def check_level(self, level: float) -> float:
        """``level`` as a float, or ``ValueError`` if the task cannot use it."""
        try:
            value = float(level)
        except (TypeError, ValueError):
            raise ValueError(f"{self.level_name} must be a number, got {level!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"{self.level_name} must be finite, got {level!r}")
        return value

    def label(self, level: float) -> str:
        """Human-readable level: ``"sigma 20"``, ``"quality 40"``."""
        return f"{self.level_name} {float(level):g}"

    @property
    def options(self) -> dict[str, Any]:
        """The keyword options that rebuild this task: ``get_task(t.name, **t.options)``."""
        return {}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({opts})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.options == self.options  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.options.items()))))


def check_images(clean: torch.Tensor) -> torch.Tensor:
    """Validate a (C, H, W) or (B, C, H, W) floating-point image tensor."""
    if not isinstance(clean, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(clean).__name__}")
    if clean.ndim not in (3, 4):
        raise ValueError(f"expected (C, H, W) or (B, C, H, W), got shape {tuple(clean.shape)}")
    if not clean.is_floating_point():
        raise TypeError(f"expected a floating-point image in [0, 1], got dtype {clean.dtype}")
    return clean


from .dejpeg import DeJPEG  # noqa: E402  (Task must exist before the task modules import it)
from .denoise import Denoise  # noqa: E402
from .restore import Restore  # noqa: E402
from .sr import SuperResolution  # noqa: E402
from .style import StyleStrength, StyleTransfer  # noqa: E402

#: Task name -> class (called with the options as keyword arguments).
TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (Denoise, DeJPEG, Restore, SuperResolution, StyleTransfer, StyleStrength)}


def get_task(name: str, **options: Any) -> Task:
    """The task registered as ``name``, built with keyword ``options``.

    Raises:
        ValueError: unknown ``name`` (the message lists the known ones) or a bad option value.
        TypeError: an option the task does not accept (the message names it).
    """
    try:
        cls = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}") from None
    accepted = [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for task {name!r}; "
            f"accepted: {', '.join(accepted) or '(none)'}"
        )
    return cls(**options)
